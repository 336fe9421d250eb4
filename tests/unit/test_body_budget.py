"""The gateway's budget of request-body bytes being read (``intake.BodyBudget``).

Through real sockets: ``tests/e2e/test_gateway_memory.py``."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from watchllm_gateway.intake import BodyBudget
from watchllm_gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


def test_one_project_holds_a_quarter_and_the_others_keep_the_rest() -> None:
    budget = BodyBudget(400)
    greedy, other = uuid.uuid4(), uuid.uuid4()
    assert budget.reserve(greedy, 100)
    assert not budget.reserve(greedy, 1), "past its quarter"
    assert budget.reserve(other, 100)
    budget.release(greedy, 100)
    assert budget.reserve(greedy, 100), "its share back once its read ended"
    assert budget.used == 200


def test_the_whole_budget_bounds_every_project_together() -> None:
    budget = BodyBudget(400)
    projects = [uuid.uuid4() for _ in range(5)]
    assert [budget.reserve(p, 100) for p in projects] == [True] * 4 + [False]
    for p in projects[:4]:
        budget.release(p, 100)
    assert budget.used == 0


def test_a_budget_too_small_for_one_largest_body_per_project_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="WATCHLLM_MAX_BODY_BYTES_IN_FLIGHT"):
        GatewaySettings(max_body_bytes=4_000_000, max_body_bytes_in_flight=15_999_999)
    GatewaySettings(max_body_bytes=4_000_000, max_body_bytes_in_flight=16_000_000)

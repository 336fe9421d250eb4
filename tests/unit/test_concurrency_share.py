"""A project's share of one gateway replica's upstream pool (``concurrency``), and the
concurrency settings. Through real gateways and Redis: tests/e2e/test_tenant_concurrency.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from watchllm_gateway.concurrency import Concurrency
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.settings import GatewaySettings
from watchllm_shared.accounts import KeyGrant, Plan

pytestmark = pytest.mark.unit


class NoRedis:
    """Commands must not be sent: nothing here holds a slot in Redis."""

    async def call_many(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise AssertionError("no Redis command expected")


def grant(project: uuid.UUID) -> KeyGrant:
    return KeyGrant(uuid.uuid4(), project, "p", Plan.PRO, True, None, 100_000)


def test_one_project_holds_its_share_and_the_others_keep_theirs() -> None:
    slots = Concurrency(NoRedis(), project_share=2, lease_seconds=30)  # type: ignore[arg-type]
    greedy, quiet = uuid.uuid4(), uuid.uuid4()
    slots.enter(grant(greedy), "r1")
    slots.enter(grant(greedy), "r2")
    with pytest.raises(GatewayError) as refused:
        slots.enter(grant(greedy), "r3")
    assert refused.value.status == 429 and refused.value.code == "concurrency_limit_exceeded"
    assert refused.value.headers["x-ratelimit-limit-concurrency"] == "2"
    assert "replica" in refused.value.message
    slots.enter(grant(quiet), "q1")  # another project is not affected
    assert (slots.in_flight(greedy), slots.in_flight(quiet)) == (2, 1)
    slots.leave("r1")
    slots.leave("r1")  # a request leaves once, however many paths report it
    slots.leave("r3")  # refused: it never entered
    assert slots.in_flight(greedy) == 1
    slots.enter(grant(greedy), "r4")
    assert slots.in_flight(greedy) == 2


def test_the_default_project_limit_is_a_replicas_share_of_its_pool() -> None:
    settings = GatewaySettings(upstream_max_connections=50)
    assert settings.project_share() == 12 and settings.default_project_concurrency() == 12
    custom = GatewaySettings(upstream_max_connections=50, upstream_project_share=0.5,
                             project_concurrency=100)  # fmt: skip
    assert custom.project_share() == 25 and custom.default_project_concurrency() == 100
    assert GatewaySettings(upstream_max_connections=1).project_share() == 1

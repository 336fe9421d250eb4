"""``model_access`` and ``unpriced`` alone: which lists allow what, what a refusal says,
the setting as operators write it, and the once-per-model warning (issue 22, finding 12).
The e2e test ``test_model_access`` shows the same through a real gateway."""

from __future__ import annotations

import logging
import uuid

import pytest
from prometheus_client import CollectorRegistry, Counter

from watchllm_gateway import model_access, unpriced
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.model_access import ModelAccess
from watchllm_gateway.pricing import PriceTable
from watchllm_gateway.settings import GatewaySettings
from watchllm_gateway.unpriced import UnpricedUse
from watchllm_shared.accounts import KeyGrant, Plan
from watchllm_shared.accounts.models import CacheSettings

pytestmark = pytest.mark.unit

PRICES = PriceTable.load({}, None)


def access(default: tuple[str, ...]) -> ModelAccess:
    return ModelAccess(default, lambda model: PRICES.price_of(model) is not None)


def grant(allowed: tuple[str, ...] | None) -> KeyGrant:
    return KeyGrant(key_id=uuid.uuid4(), project_id=uuid.uuid4(), project_name="acme",
                    plan=Plan.PRO, active=True, allowed_models=allowed, requests_per_day=1000,
                    cache=CacheSettings(True, "semantic", None, 60))  # fmt: skip


def test_the_default_allows_priced_models_and_their_snapshots_only() -> None:
    assert GatewaySettings().default_allowed_models == ("@priced",)
    priced = access(GatewaySettings().default_allowed_models)
    for model in (
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "claude-sonnet-4-5",
        "text-embedding-3-small",
    ):
        assert priced.allows(model, None), model
    for model in ("ft:gpt-4o-mini:acme:house:abc", "gpt-house-tuned", "llama-9000", "@priced"):
        assert not priced.allows(model, None), model


def test_star_is_every_model_as_before_and_operators_write_it_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHLLM_DEFAULT_ALLOWED_MODELS", '["*"]')
    everything = access(GatewaySettings().default_allowed_models)
    assert everything.allows("ft:gpt-4o-mini:acme:house:abc", None)
    monkeypatch.setenv("WATCHLLM_DEFAULT_ALLOWED_MODELS", '["@priced", "ft:gpt-4o-mini:acme:*"]')
    mixed = access(GatewaySettings().default_allowed_models)
    assert mixed.allows("ft:gpt-4o-mini:acme:house:abc", None) and mixed.allows("gpt-4o", None)
    assert not mixed.allows("ft:gpt-4o-mini:other:x", None)
    monkeypatch.setenv("WATCHLLM_DEFAULT_ALLOWED_MODELS", "[]")  # only projects with lists
    assert not access(GatewaySettings().default_allowed_models).allows("gpt-4o", None)


def test_a_projects_list_wins_and_may_name_the_default() -> None:
    priced = access(("@priced",))
    assert priced.allows("gpt-house-tuned", ("gpt-house-*",))
    assert not priced.allows("gpt-4o", ("gpt-house-*",))  # the list replaces the default
    both = ("@default", "gpt-house-tuned")
    assert priced.allows("gpt-4o", both) and priced.allows("gpt-house-tuned", both)
    assert not priced.allows("gpt-other-tuned", both)
    assert not priced.allows("gpt-4o", ())  # an empty list: no model
    assert not priced.allows("@unknown", ("@unknown",))  # unknown words match nothing


@pytest.mark.parametrize("default", [("@default",), ("@anything",), ("",)])
def test_a_default_with_words_it_cannot_hold_is_refused_at_start(default: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="WATCHLLM_DEFAULT_ALLOWED_MODELS"):
        access(default)


def test_the_refusal_names_the_model_the_project_and_how_to_allow_it() -> None:
    with pytest.raises(GatewayError) as by_default:
        access(("@priced",)).check("gpt-house-tuned", grant(None))
    error = by_default.value
    assert (error.status, error.code) == (403, "model_not_allowed")
    assert "'gpt-house-tuned'" in error.message and "'acme'" in error.message
    assert "watchllm projects models acme --add 'gpt-house-tuned'" in error.message
    assert "WATCHLLM_DEFAULT_ALLOWED_MODELS" in error.message
    assert "WATCHLLM_PRICES" in error.message
    with pytest.raises(GatewayError) as by_list:
        access(("@priced",)).check("gpt-4o", grant(("gpt-4o-mini",)))
    assert "the project's allowed models do not match it" in by_list.value.message
    assert "watchllm projects models acme --add 'gpt-4o'" in by_list.value.message
    access(("@priced",)).check("gpt-4o", grant(None))  # allowed: no exception


def test_unpriced_use_is_counted_every_time_and_logged_once_per_model(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    counter = Counter("unpriced", "test", ["model"], registry=registry)
    use = UnpricedUse(counter, lambda model: model if model == "house" else "other")
    monkeypatch.setattr(unpriced, "MAX_LOGGED_MODELS", 3)
    with caplog.at_level(logging.WARNING, logger=unpriced.__name__):
        for model in ["house", "house", "a", "b", "c", "d", "e", "a"]:
            use.record(model)
    assert registry.get_sample_value("unpriced_total", {"model": "house"}) == 2
    assert registry.get_sample_value("unpriced_total", {"model": "other"}) == 6
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "has no price" in m] == [
        f"model {m!r} has no price: its requests are recorded at $0 (unpriced) and counted"
        " in watchllm_unpriced_requests_total; give it a price with WATCHLLM_PRICES or"
        " WATCHLLM_PRICE_TABLE_PATH"
        for m in ("house", "a", "b")
    ]
    assert sum("further ones are only counted" in m for m in messages) == 1
    assert len(messages) == 4


def test_remembered_answers_stay_right_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_access, "MAX_REMEMBERED", 2)
    priced = access(("@priced",))
    names = ["gpt-4o", "gpt-x-1", "gpt-4o-mini", "gpt-x-2", "gpt-4o", "gpt-x-1"]
    assert [priced.allows(n, None) for n in names] == [True, False, True, False, True, False]
    assert len(priced._by_default) <= 2

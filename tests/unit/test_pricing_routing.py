"""Cost per model and model routing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.pricing import PriceTable
from watchllm_gateway.routing import ModelRouter, load_routes
from watchllm_gateway.settings import (
    GatewaySettings,
    ModelPrice,
    ProviderKind,
    RouteConfig,
    secret_from_env,
)

pytestmark = pytest.mark.unit


def test_dated_snapshots_price_as_their_family_and_the_most_specific_prefix_wins() -> None:
    table = PriceTable.load({}, None)
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 0) == Decimal("2.50")
    assert table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == Decimal("0.75")
    assert table.cost("unknown-model", 10, 10) is None


def test_operator_overrides_beat_the_file_which_beats_built_ins(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        '{"gpt-4o": {"input_per_million": "1", "output_per_million": "1"},'
        ' "house-model": {"input_per_million": "3", "output_per_million": "6"}}'
    )
    table = PriceTable.load(
        {"house-model": ModelPrice(input_per_million=Decimal(4), output_per_million=Decimal(8))},
        path,
    )
    assert table.cost("gpt-4o", 1_000_000, 0) == Decimal(1)
    assert table.cost("house-model", 500_000, 500_000) == Decimal(6)


def _router(*routes: RouteConfig) -> ModelRouter:
    return ModelRouter.from_document(load_routes(GatewaySettings(routes=routes)), secret_from_env)


def test_first_matching_route_of_the_endpoint_protocol_wins() -> None:
    router = _router(
        RouteConfig(pattern="claude-*", provider=ProviderKind.ANTHROPIC, base_url="http://a"),
        RouteConfig(pattern="gpt-*", provider=ProviderKind.OPENAI, base_url="http://o/v1/"),
    )
    (gpt,) = router.resolve("gpt-4o", ProviderKind.OPENAI).deployments
    assert gpt.base_url == "http://o/v1"
    (claude,) = router.resolve("claude-haiku-4-5", ProviderKind.ANTHROPIC).deployments
    assert claude.base_url == "http://a"
    with pytest.raises(GatewayError) as wrong:
        router.resolve("claude-haiku-4-5", ProviderKind.OPENAI)
    assert wrong.value.status == 400 and "/v1/messages" in wrong.value.message
    with pytest.raises(GatewayError) as missing:
        router.resolve("llama-3", ProviderKind.OPENAI)
    assert missing.value.status == 404 and missing.value.code == "model_not_found"


def test_routes_resolve_provider_keys_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-test-123")
    router = _router(
        RouteConfig(
            pattern="*", provider=ProviderKind.OPENAI, base_url="http://x",
            api_key_env="MY_UPSTREAM_KEY",
        )
    )  # fmt: skip
    (deployment,) = router.deployments()
    assert deployment.api_key is not None
    assert deployment.api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(deployment)


def test_routes_are_read_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "WATCHLLM_ROUTES", '[{"pattern": "*", "provider": "openai", "base_url": "http://u/v1"}]'
    )
    router = ModelRouter.from_document(load_routes(GatewaySettings()), secret_from_env)
    (deployment,) = router.deployments()
    assert deployment.base_url == "http://u/v1" and deployment.api_key is None

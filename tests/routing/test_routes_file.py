"""The routes file and its JSON shorthand: one schema, the original route list still
accepted, and every problem reported naming its entry and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watchllm_gateway.routing import ModelRouter, RoutesError, load_routes
from watchllm_gateway.routing.__main__ import main as check_main
from watchllm_gateway.routing.schema import parse_text
from watchllm_gateway.settings import GatewaySettings, ProviderKind, secret_from_env

pytestmark = pytest.mark.unit

ROUTES_YAML = """
models:
  - name: gpt-4o-mini
    deployments:
      - provider: openai
        base_url: http://127.0.0.1:9001/v1/
        api_key_env: ROUTES_TEST_KEY_A
        weight: 3
        model: gpt-4o-mini-2024-07-18
      - provider: openai
        base_url: http://127.0.0.1:9002/v1
        name: openai-b
        rpm: 500
    fallbacks: [gpt-4o, claude-haiku-4-5]
  - name: gpt-*
    deployments: [{provider: openai, base_url: "http://127.0.0.1:9003/v1"}]
    models: [gpt-4o]
  - name: claude-*
    deployments: [{provider: anthropic, base_url: "http://127.0.0.1:9004"}]
"""


def router(settings: GatewaySettings) -> ModelRouter:
    return ModelRouter.from_document(load_routes(settings), secret_from_env)


def problems(text: str) -> list[str]:
    with pytest.raises(RoutesError) as refused:
        parse_text(text, "routes.yaml")
    return refused.value.problems


def test_a_yaml_file_gives_weighted_deployments_and_a_fallback_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTES_TEST_KEY_A", "sk-a")
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_YAML)
    table = router(GatewaySettings(routes_file=path))
    first, fallback, *rest = table.chain("gpt-4o-mini", ProviderKind.OPENAI)
    a, b = first.deployments
    assert (a.name, a.base_url, a.weight, a.model) == (
        "gpt-4o-mini[0]", "http://127.0.0.1:9001/v1", 3.0, "gpt-4o-mini-2024-07-18"
    )  # fmt: skip
    assert a.api_key is not None and a.api_key.get_secret_value() == "sk-a"
    assert (b.name, b.weight, b.model, b.api_key) == ("openai-b", 1.0, None, None)
    # gpt-4o is served by the gpt-* entry; claude-haiku-4-5 only by an Anthropic
    # deployment: reached by translation only (not by /v1/embeddings).
    assert (fallback.model, [d.name for d in fallback.deployments]) == ("gpt-4o", ["gpt-*[0]"])
    assert rest == []
    *_, claude_fallback = table.chain("gpt-4o-mini", ProviderKind.OPENAI, translate=True)
    assert [d.name for d in claude_fallback.deployments] == ["claude-*[0]"]
    (claude,) = table.chain("claude-haiku-4-5", ProviderKind.ANTHROPIC)
    assert claude.deployments[0].provider is ProviderKind.ANTHROPIC
    assert {"gpt-4o-mini", "gpt-4o", "gpt-4o-mini-2024-07-18"} <= table.configured_models()


def test_the_json_shorthand_is_the_same_schema_and_the_original_list_still_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import yaml

    document = yaml.safe_load(ROUTES_YAML)
    monkeypatch.setenv("WATCHLLM_ROUTES", json.dumps(document))
    assert load_routes(GatewaySettings()) == parse_text(ROUTES_YAML, "file")
    monkeypatch.setenv("WATCHLLM_ROUTES", json.dumps(document["models"]))
    assert load_routes(GatewaySettings()) == parse_text(ROUTES_YAML, "file")
    original = [
        {"pattern": "claude-*", "provider": "anthropic", "base_url": "http://a",
         "api_key_env": "K", "models": ["claude-haiku-4-5"]},
        {"pattern": "*", "provider": "openai", "base_url": "http://o/v1"},
    ]  # fmt: skip
    monkeypatch.setenv("WATCHLLM_ROUTES", json.dumps(original))
    table = router(GatewaySettings())
    (claude,) = table.resolve("claude-x", ProviderKind.ANTHROPIC).deployments
    assert (claude.name, claude.base_url) == ("claude-*[0]", "http://a")
    assert table.listed_models() == [("claude-haiku-4-5", ProviderKind.ANTHROPIC)]


def test_without_routes_claude_goes_to_anthropic_and_the_rest_to_openai() -> None:
    table = router(GatewaySettings())
    (claude,) = table.resolve("claude-sonnet-4-5", ProviderKind.ANTHROPIC).deployments
    (gpt,) = table.resolve("gpt-4o", ProviderKind.OPENAI).deployments
    assert claude.base_url == "https://api.anthropic.com"
    assert gpt.base_url == "https://api.openai.com/v1"


def test_every_problem_is_reported_with_its_entry_and_field() -> None:
    found = problems("""
models:
  - name: gpt-4o-mini
    deployments:
      - {provider: openai, base_url: "127.0.0.1:9001/v1", weight: 0}
      - {provider: azure, base_url: "http://x", wieght: 2}
      - {provider: openia, base_url: "http://y"}
  - name: claude-*
    deployments: []
""")
    assert found == [
        "models[0] 'gpt-4o-mini': deployments[0].base_url: must start with http:// or https://",
        "models[0] 'gpt-4o-mini': deployments[0].weight: Input should be greater than 0",
        "models[0] 'gpt-4o-mini': deployments[1].wieght: unknown field",
        "models[0] 'gpt-4o-mini': deployments[2].provider: Input should be 'openai', 'anthropic'"
        " or 'azure'",
        "models[1] 'claude-*': deployments: needs at least one entry",
    ]


def test_provider_only_fields_are_refused_elsewhere_and_azure_needs_its_api_version() -> None:
    found = problems("""
models:
  - name: m
    deployments:
      - {provider: azure, base_url: "https://r.openai.azure.com"}
      - {provider: openai, base_url: "http://x/v1", api_version: "2024-10-21"}
      - {provider: openai, base_url: "http://y/v1", default_max_tokens: 100}
      - {provider: azure, base_url: "https://r.openai.azure.com", api_version: "v 1"}
""")
    assert found == [
        "models[0] 'm': deployments[0]: provider 'azure' needs api_version (e.g. \"2024-10-21\")",
        "models[0] 'm': deployments[1]: api_version is only for provider 'azure'",
        "models[0] 'm': deployments[2]: default_max_tokens is only for provider 'anthropic'",
        "models[0] 'm': deployments[3].api_version: String should match pattern"
        " '^[A-Za-z0-9._\\-]{1,40}$'",
    ]


def test_names_and_fallbacks_are_checked_across_entries() -> None:
    found = problems("""
models:
  - name: a
    deployments:
      - {provider: openai, base_url: "http://x/v1", name: one}
      - {provider: openai, base_url: "http://y/v1", name: one}
    fallbacks: [a, b]
    context_window_fallbacks: [c]
""")
    assert found == [
        "models[0] 'a': deployments[1].name: 'one' is already the name of models[0] 'a'"
        " deployments[0]",
        "models[0] 'a': fallbacks[0]: 'a' is the entry itself",
        "models[0] 'a': fallbacks[1]: no entry serves the model 'b'",
        "models[0] 'a': context_window_fallbacks[0]: no entry serves the model 'c'",
    ]


def test_rpm_and_tpm_are_positive_and_reach_the_deployment() -> None:
    found = problems("""
models:
  - name: m-{x}
    deployments:
      - {provider: openai, base_url: "http://x/v1", rpm: 0, tpm: -5}
      - {provider: openai, base_url: "http://y/v1", tpm: 100}
""")
    assert found == [
        "models[0] 'm-{x}': deployments[0].rpm: Input should be greater than or equal to 1",
        "models[0] 'm-{x}': deployments[0].tpm: Input should be greater than or equal to 1",
    ]  # once those are fixed, the braces of the default name are a problem of their own
    assert problems("""
models:
  - name: m-{x}
    deployments: [{provider: openai, base_url: "http://y/v1", tpm: 100}]
""") == ["models[0] 'm-{x}': deployments[0].name: a deployment with rpm or tpm needs a name"
         " without braces"]  # fmt: skip
    document = parse_text(
        "models: [{name: m, deployments: [{provider: openai, base_url: 'http://x/v1',"
        " rpm: 500, tpm: 200000}, {provider: openai, base_url: 'http://y/v1'}]}]",
        "routes.yaml",
    )
    (limited, free), *_ = (c.deployments for c in ModelRouter.from_document(
        document, secret_from_env).chain("m", ProviderKind.OPENAI))  # fmt: skip
    assert (limited.rpm, limited.tpm, limited.limited) == (500, 200000, True)
    assert (free.rpm, free.tpm, free.limited) == (None, None, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: [\n", "not valid YAML"),
        ("- just a string\n", "models[0]: entry: Input should be a valid dictionary"),
        ("models: []\n", "models: needs at least one entry"),
        ("routes: []\n", "routes: unknown field"),
        ("42\n", "expected a mapping with a 'models' list, or a list"),
    ],
)
def test_a_malformed_document_says_what_is_wrong(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_the_original_shape_refuses_unknown_fields_under_their_own_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHLLM_ROUTES", '[{"pattern": "*", "provider": "openai",'
                       ' "base_url": "http://u/v1", "api_key": "sk-inline"}]')  # fmt: skip
    with pytest.raises(RoutesError) as refused:
        load_routes(GatewaySettings())
    assert refused.value.problems == ["models[0] '*': api_key: unknown field"]
    monkeypatch.setenv("WATCHLLM_ROUTES", "[{")
    with pytest.raises(RoutesError, match="WATCHLLM_ROUTES: not valid JSON"):
        load_routes(GatewaySettings())


def test_a_file_and_the_shorthand_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_YAML)
    monkeypatch.setenv("WATCHLLM_ROUTES", "[]")
    with pytest.raises(RoutesError, match="not both"):
        load_routes(GatewaySettings(routes_file=path))
    with pytest.raises(RoutesError, match="cannot be read"):
        load_routes(GatewaySettings(routes_file=tmp_path / "missing.yaml", routes=None))


def test_routes_check_prints_the_table_or_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(ROUTES_YAML)
    bad.write_text(
        "models:\n  - name: x\n    deployments: [{provider: openai, base_url: ftp://x}]\n"
    )
    assert check_main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini -> fallbacks gpt-4o, claude-haiku-4-5" in out
    assert "openai-b: openai http://127.0.0.1:9002/v1 weight 1 rpm 500\n" in out
    assert check_main(["check", str(bad)]) == 1
    assert "models[0] 'x': deployments[0].base_url: must start with http://" in (
        capsys.readouterr().err
    )
    # The operator's command runs the same check (in the gateway's package).
    watchllm = str(Path(sys.executable).parent / "watchllm")
    refused = subprocess.run([watchllm, "routes", "check", str(bad)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "deployments[0].base_url" in refused.stderr

"""docker-compose.yml, validated offline by two tools and checked for the promised shape.

- Docker Compose itself (Debian's docker-compose 1.29.2, installed by `make deploy-tools`,
  a prerequisite of `make test`): `config` interpolates, validates against its schema and
  resolves references (services, volumes, networks).
- The current Compose Specification JSON schema (the one Docker Compose v2 uses, vendored
  in the check-jsonschema package), so nothing v1 tolerates but v2 rejects slips in.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.support import (
    COMPOSE_FILE,
    COMPOSE_SECRETS,
    COMPOSE_TEST_ENV,
    SERVICES,
    compose_interpolated_variables,
    compose_raw,
    docker_compose_config,
)

pytestmark = pytest.mark.unit

APP_SERVICES = set(SERVICES)
STORES = {"postgres", "redis", "qdrant", "clickhouse"}


@pytest.fixture(scope="module")
def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail("docker-compose is not installed: run `make deploy-tools` (make test does)")
    return path


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def resolved(docker_compose: str, empty_env_file: Path) -> dict[str, Any]:
    """docker-compose.yml as Docker Compose resolves it, with the test passwords."""
    result = docker_compose_config(
        COMPOSE_TEST_ENV, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config"
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def test_docker_compose_config_accepts_the_file_with_env_example(docker_compose: str) -> None:
    """`docker-compose config -q` passes with .env.example plus the four passwords."""
    result = docker_compose_config(
        COMPOSE_TEST_ENV, "--env-file", ".env.example", "-f", str(COMPOSE_FILE), "config", "-q"
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_start_without_the_passwords(
    docker_compose: str, empty_env_file: Path
) -> None:
    result = docker_compose_config({}, "--env-file", str(empty_env_file), "config", "-q")
    assert result.returncode != 0
    assert "set " in result.stderr and "PASSWORD in .env" in result.stderr, result.stderr


def test_docker_compose_config_catches_a_typo(docker_compose: str, tmp_path: Path) -> None:
    """The validator is live: a misspelled condition in a copy of the file fails."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    assert "condition: service_healthy" in text
    broken.write_text(text.replace("condition: service_healthy", "condition: service_heathy", 1))
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = docker_compose_config(
        COMPOSE_TEST_ENV, "--env-file", str(empty), "-f", str(broken), "config", "-q"
    )
    assert result.returncode != 0
    assert "service_heathy" in result.stderr


def _compose_spec_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def test_matches_the_current_compose_specification_schema() -> None:
    schema = _compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose_raw()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # and the schema is strict enough to notice an unknown key
    bad = compose_raw()
    bad["services"]["gateway"]["helthcheck"] = {}
    assert list(validator.iter_errors(bad))


def test_every_service_and_store_is_there(resolved: dict[str, Any]) -> None:
    services = set(resolved["services"])
    assert APP_SERVICES | STORES | {"migrate", "otel-collector"} == services


def test_only_the_gateway_and_the_dashboard_are_published(resolved: dict[str, Any]) -> None:
    published = {
        name: [(str(p["published"]), int(p["target"])) for p in svc.get("ports", [])]
        for name, svc in resolved["services"].items()
        if svc.get("ports")
    }
    assert published == {
        "gateway": [("8080", SERVICES["gateway"].port)],
        "dashboard": [("3000", SERVICES["dashboard"].port)],
    }
    for name, svc in resolved["services"].items():
        assert "expose" not in svc, name


def test_long_running_services_have_health_checks(resolved: dict[str, Any]) -> None:
    for name, svc in resolved["services"].items():
        if name in ("migrate", "otel-collector"):
            continue  # one-shot; distroless collector image (nothing waits for it)
        check = svc.get("healthcheck", {})
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), name


def test_start_order_follows_health(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, svc in services.items():
        for dependency, rule in (svc.get("depends_on") or {}).items():
            condition = rule["condition"]
            if dependency == "migrate":
                assert condition == "service_completed_successfully", name
            else:
                assert condition == "service_healthy", f"{name} -> {dependency}"
                assert services[dependency].get("healthcheck"), dependency
    # Every service that reads Postgres waits for the schema.
    for name, svc in services.items():
        if "DATABASE_URL" in (svc.get("environment") or {}) and name != "migrate":
            assert "migrate" in svc["depends_on"], name
    assert services["migrate"]["restart"] == "no"


def test_stores_are_private_and_keep_their_data(resolved: dict[str, Any]) -> None:
    raw = compose_raw()
    assert raw["networks"]["data"]["internal"] is True
    volumes = set(raw["volumes"])
    for store in STORES:
        svc = resolved["services"][store]
        assert set(svc["networks"]) == {"data"}, store
        sources = {str(v).split(":", 1)[0] for v in raw["services"][store]["volumes"]}
        named = {s for s in sources if not s.startswith((".", "/"))}
        assert named and named <= volumes, store
    for name in ("cache", "analytics", "migrate"):
        assert set(resolved["services"][name]["networks"]) == {"data"}, name
    # The limiter delivers alert webhooks (watchllm_limiter.alerts): it needs a way out.
    assert set(resolved["services"]["limiter"]["networks"]) == {"data", "edge"}


def test_watchllm_containers_are_hardened(resolved: dict[str, Any]) -> None:
    for name in APP_SERVICES | {"migrate"}:
        svc = resolved["services"][name]
        assert svc.get("read_only") is True, name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name


def test_the_collector_is_optional(resolved: dict[str, Any]) -> None:
    raw = compose_raw()
    assert raw["services"]["otel-collector"]["profiles"] == ["otel"]
    assert not any(
        "otel-collector" in (svc.get("depends_on") or {}) for svc in raw["services"].values()
    )
    config = yaml.safe_load((COMPOSE_FILE.parent / "deploy/otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind


def test_required_variables_are_the_passwords_and_secrets() -> None:
    required = {name for name, req in compose_interpolated_variables().items() if req}
    assert required == set(COMPOSE_TEST_ENV)


@pytest.mark.parametrize("secret", list(COMPOSE_SECRETS))
def test_docker_compose_refuses_to_start_without_a_secret(
    docker_compose: str, empty_env_file: Path, secret: str
) -> None:
    """Issue 22: the analytics query API answered anyone while its token was empty."""
    without = {k: v for k, v in COMPOSE_TEST_ENV.items() if k != secret}
    result = docker_compose_config(without, "--env-file", str(empty_env_file), "config", "-q")
    assert result.returncode != 0
    assert f"set {secret} in .env" in result.stderr, result.stderr

"""docker-compose.yml, k8s/, the Dockerfiles and .env.example against the code.

- Every environment variable a deployment file sets for a service is one that service
  reads (pydantic-settings fields: env_prefix + name, or aliases; the gateway's provider
  key variables; the OpenTelemetry SDK's own OTEL_* names), and its value validates.
- Every variable the code reads is documented in .env.example, with the code's default.
- Images, ports, health paths and service URLs agree everywhere, and the health paths
  are routes the services really serve.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from tests.deploy import kustomize
from tests.deploy.support import (
    ALL_IMAGES,
    CLI,
    COMPOSE_FILE,
    COMPOSE_TEST_ENV,
    K8S,
    OVERLAYS,
    REPO,
    SERVICES,
    compose_interpolated_variables,
    compose_raw,
    dockerfile_stages,
    documented_variables,
    env_example,
    env_instruction_values,
    environment_dict,
    field_env_names,
    is_read_by,
)

pytestmark = pytest.mark.unit

# Variables a WatchLLM image sets for the interpreter or a library, not for our code.
RUNTIME_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "HOME"}
# Variables compose does not hand to a service, and why.
NOT_IN_COMPOSE = {
    "WATCHLLM_INSTANCE_NAME": "computed per replica",
    "WATCHLLM_LIMITER_CONSUMER_NAME": "computed per replica",
    "WATCHLLM_CACHE_CONSUMER_NAME": "computed per replica",
    "WATCHLLM_ANALYTICS_CONSUMER_NAME": "computed per replica",
    "WATCHLLM_PRICE_TABLE_PATH": "a file: mount it in an override first",
    "WATCHLLM_EMBEDDING_MODEL_NAME": "tied to the model baked into the image",
    "WATCHLLM_DATA_DIR": "embedded stores only (`watchllm up`); the analytics image has no chdb",
}


def _compose_services() -> dict[str, Any]:
    """Services with YAML anchors merged; interpolation left as written."""
    services: dict[str, Any] = compose_raw()["services"]
    return services


def _interpolate(value: str) -> str:
    def sub(match: re.Match[str]) -> str:
        return COMPOSE_TEST_ENV.get(match.group(1), "")

    return re.sub(r"\$\{([A-Z0-9_]+)[^}]*\}", sub, value)


def _settings_from_env(
    name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """Build the service's settings class from exactly ``env``: values must validate."""
    cls = ALL_IMAGES[name].settings_class
    for group in field_env_names(cls).values():
        for variable in group:
            monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    try:
        return cls()
    except ValidationError as exc:
        pytest.fail(f"{name}: {exc}")


# ---- environment variables -----------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL_IMAGES))
def test_compose_sets_only_variables_the_service_reads(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment_dict(_compose_services()[name]["environment"])
    unread = sorted(v for v in env if not is_read_by(name, v))
    assert not unread, f"{name} does not read {unread}"
    _settings_from_env(name, {k: _interpolate(v) for k, v in env.items()}, monkeypatch)


@pytest.mark.parametrize("name", list(SERVICES))
def test_compose_hands_every_documented_variable_to_the_service(name: str) -> None:
    """Setting a variable in .env reaches each service that reads it."""
    env = environment_dict(_compose_services()[name]["environment"])
    _, stages = dockerfile_stages(REPO / SERVICES[name].dockerfile)
    image_env = env_instruction_values(stages[-1])
    for group in field_env_names(SERVICES[name].settings_class).values():
        if set(group) & (set(env) | set(image_env)) or group[0] in NOT_IN_COMPOSE:
            continue
        pytest.fail(f"{name} reads {group[0]} but docker-compose.yml never sets it")


@pytest.mark.parametrize("name", list(ALL_IMAGES))
def test_image_sets_only_variables_the_service_reads(name: str) -> None:
    _, stages = dockerfile_stages(REPO / ALL_IMAGES[name].dockerfile)
    env = env_instruction_values(stages[-1])
    allowed = set(RUNTIME_VARIABLES)
    if name == "dashboard":
        from streamlit import config

        allowed |= {option.env_var for option in config._config_options_template.values()}
    unread = sorted(v for v in env if not is_read_by(name, v) and v not in allowed)
    assert not unread, f"{name} image sets {unread}"


def _k8s_configmaps(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}


def _k8s_secrets(objects: list[dict[str, Any]]) -> dict[str, str]:
    template = yaml.safe_load((K8S / "base/secret.example.yaml").read_text())
    secrets: dict[str, str] = dict(template["stringData"])
    for obj in objects:
        if obj["kind"] == "Secret":
            secrets.update(kustomize.secret_values(obj))
    return secrets


def _workload_env(
    obj: dict[str, Any], configmaps: dict[str, dict[str, str]], secrets: dict[str, str]
) -> dict[str, str]:
    (container,) = kustomize.pod_spec(obj)["containers"]  # type: ignore[index]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "watchllm-secrets"
            assert ref["key"] in secrets, f"Secret key {ref['key']} is in no template"
            env[item["name"]] = secrets[ref["key"]]
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_sets_only_variables_the_service_reads(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = kustomize.render(K8S / "overlays" / overlay)
    configmaps, secrets = _k8s_configmaps(objects), _k8s_secrets(objects)
    seen = set()
    for obj in objects:
        if kustomize.pod_spec(obj) is None or obj["kind"] == "StatefulSet":
            continue
        (container,) = kustomize.pod_spec(obj)["containers"]  # type: ignore[index]
        name = container["name"]
        assert name in ALL_IMAGES, name
        seen.add(name)
        env = _workload_env(obj, configmaps, secrets)
        unread = sorted(v for v in env if not is_read_by(name, v))
        assert not unread, f"{overlay}: {name} does not read {unread}"
        with monkeypatch.context() as patch:
            _settings_from_env(name, env, patch)
    assert seen == set(ALL_IMAGES)


# The secrets a service refuses to start without: its settings method that checks them.
REQUIRED_SECRETS = {"analytics": "query_token", "gateway": "cache_key"}


def test_compose_and_the_dev_overlay_give_each_service_the_secrets_it_requires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With compose's required variables and the dev Secret, every service that refuses
    to start without a secret gets a valid one (issue 22: an empty token left analytics'
    query API open). The prod overlay takes them from your Secret (the template)."""
    objects = kustomize.render(K8S / "overlays/dev")
    configmaps, secrets = _k8s_configmaps(objects), _k8s_secrets(objects)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    workloads = {o["spec"]["template"]["spec"]["containers"][0]["name"]: o for o in deployments}
    for name, method in REQUIRED_SECRETS.items():
        compose = environment_dict(_compose_services()[name]["environment"])
        sources = {"compose": {k: _interpolate(v) for k, v in compose.items()},
                   "k8s dev": _workload_env(workloads[name], configmaps, secrets)}  # fmt: skip
        for source, env in sources.items():
            with monkeypatch.context() as patch:
                settings = _settings_from_env(name, env, patch)
                getattr(settings, method)()  # raises MissingSecret
            assert len(env) > 1, source


def test_every_secret_key_a_workload_needs_is_in_the_dev_secret() -> None:
    objects = kustomize.render(K8S / "overlays/dev")
    (dev_secret,) = [o for o in objects if o["kind"] == "Secret"]
    template = yaml.safe_load((K8S / "base/secret.example.yaml").read_text())["stringData"]
    for obj in objects:
        spec = kustomize.pod_spec(obj)
        for container in spec["containers"] if spec else []:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                assert ref["key"] in kustomize.secret_values(dev_secret), ref["key"]
                if obj["kind"] != "StatefulSet":
                    assert ref["key"] in template, f"{ref['key']} missing from the template"
    # the dev URLs carry the dev stores' passwords
    data = kustomize.secret_values(dev_secret)
    assert f":{data['postgres-password']}@postgres:5432/" in data["database-url"]
    assert f":{data['redis-password']}@redis:6379/" in data["redis-url"]
    assert f"watchllm:{data['clickhouse-password']}@clickhouse:8123" in data["clickhouse-url"]
    assert (
        f"dashboard:{data['clickhouse-dashboard-password']}@clickhouse:8123"
        in data["dashboard-clickhouse-url"]
    )


# ---- .env.example ----------------------------------------------------------------


def test_env_example_documents_every_variable_and_nothing_else() -> None:
    documented = set(env_example())
    compose_only = set(compose_interpolated_variables()) - documented_variables()
    missing = sorted(documented_variables() - documented)
    assert not missing, f".env.example does not document {missing}"
    assert not sorted(compose_only - documented), "compose variables undocumented"
    stale = sorted(documented - documented_variables() - compose_only)
    assert not stale, f".env.example documents variables nothing reads: {stale}"


def test_env_example_sets_what_compose_requires() -> None:
    entries = env_example()
    for name, required in compose_interpolated_variables().items():
        if required:
            assert not entries[name].commented, f"{name} is required: leave it uncommented"


def _default(name: str) -> tuple[Any, Any] | None:
    """(annotation, default) of the first settings field that variable sets."""
    for spec in ALL_IMAGES.values():
        cls = spec.settings_class
        for field_name, group in field_env_names(cls).items():
            if group[0] == name:
                field = cls.model_fields[field_name]
                return field.annotation, field.default
    return None


def test_env_example_shows_the_code_defaults() -> None:
    checked = 0
    for entry in env_example().values():
        if not entry.commented or entry.value == "":
            continue
        found = _default(entry.name)
        assert found is not None, entry.name
        annotation, default = found
        assert default is not PydanticUndefined and default is not None, entry.name
        value = TypeAdapter(annotation).validate_python(entry.value)
        assert value == default, f"{entry.name}: .env.example says {entry.value}, code {default}"
        checked += 1
    assert checked > 40


# ---- images, ports, health paths, URLs ----------------------------------------------


def _image_name(image: str) -> str:
    return image.split(":", 1)[0]


def test_compose_builds_and_names_the_same_images() -> None:
    services = _compose_services()
    for name, spec in ALL_IMAGES.items():
        assert _image_name(services[name]["image"]) == spec.image
        assert services[name]["build"] == {"context": ".", "dockerfile": spec.dockerfile}
    k8s_images = set()
    for overlay in OVERLAYS:
        for obj in kustomize.render(K8S / "overlays" / overlay):
            pod = kustomize.pod_spec(obj)
            if pod and obj["kind"] != "StatefulSet":
                k8s_images |= {_image_name(c["image"]) for c in pod["containers"]}
    assert k8s_images == {image.image for image in ALL_IMAGES.values()}


def test_compose_health_checks_use_the_service_ports_and_paths() -> None:
    services = _compose_services()
    for name, spec in SERVICES.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{spec.port}{spec.readiness}" in test, name


def test_health_paths_are_routes_of_the_services() -> None:
    for name, spec in SERVICES.items():
        if name == "dashboard":
            from streamlit.web.server.starlette import starlette_routes

            assert spec.liveness == "/" + starlette_routes.ROUTE_HEALTH
            continue
        source = "\n".join(p.read_text() for p in (REPO / f"services/{name}/src").rglob("*.py"))
        for path in {spec.liveness, spec.readiness}:
            assert re.search(rf"\.get\(\s*\"{re.escape(str(path))}\"", source), (name, path)


def test_service_urls_point_at_the_right_ports() -> None:
    """http://gateway:8080 and the like, wherever a deployment file names a service."""
    texts = [COMPOSE_FILE.read_text()] + [p.read_text() for p in K8S.rglob("*.yaml")]
    found = 0
    for text in texts:
        for host, port in re.findall(r"https?://(?:[^@/\s]*@)?([a-z-]+):(\d+)", text):
            if host in SERVICES:
                assert int(port) == SERVICES[host].port, f"{host}:{port}"
                found += 1
    assert found >= 4


def test_clickhouse_users_are_the_same_file_in_compose_and_k8s() -> None:
    deploy = REPO / "deploy/clickhouse/users.d/watchllm.xml"
    objects = kustomize.load_documents(K8S / "overlays/dev/datastores.yaml")
    (users,) = [o for o in objects if o["metadata"]["name"] == "clickhouse-users"]
    assert users["data"]["watchllm.xml"] == deploy.read_text()
    # every password the file reads from the environment is set by both
    needed = set(re.findall(r'from_env="([A-Z_]+)"', deploy.read_text()))
    assert needed == {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_DASHBOARD_PASSWORD"}
    compose_env = environment_dict(_compose_services()["clickhouse"]["environment"])
    assert needed <= set(compose_env)
    (statefulset,) = [
        o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "clickhouse"
    ]
    k8s_env = {e["name"] for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert needed <= k8s_env
    assert compose_env.get("CLICKHOUSE_SKIP_USER_SETUP") == "1"


def test_migrate_commands_parse_with_the_cli() -> None:
    """The arguments compose and the Job pass are options `watchllm` really has."""
    from watchllm_shared.cli.main import cli

    commands = [_compose_services()["migrate"]["command"]]
    job = kustomize.load_documents(K8S / "base/migrate-job.yaml")[0]
    commands.append(job["spec"]["template"]["spec"]["containers"][0]["args"])
    _, stages = dockerfile_stages(REPO / CLI.dockerfile)
    commands.append(yaml.safe_load(stages[-1].all("CMD")[0]))
    for args in commands:
        name, *rest = args
        command = cli.commands[name]
        command.make_context(name, list(rest))  # raises on an unknown option or bad value


def test_documentation_links_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/deployment.md" in readme
    doc = (REPO / "docs/deployment.md").read_text()
    for path in re.findall(r"\]\(((?:\.\./)?[\w./-]+)\)", doc):
        if path.startswith("http"):
            continue
        assert (REPO / "docs" / Path(path)).resolve().exists(), path

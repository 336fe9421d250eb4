"""What the deployment tests compare against: the services as the code defines them.

Ports come from each settings class's ``<service>_port`` default, variable names from
the pydantic-settings fields (``env_prefix`` + field name, or the field's aliases), the
images' package sets from uv.lock through the Dockerfiles' own ``uv sync`` commands.
Only the health paths and image names are written here; the tests check those against
the code (route decorators) and against every deployment file.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")

# Values for the variables docker-compose.yml requires (`${VAR:?…}`) when the tests
# resolve it; distinct so that a URL built from the wrong one is visible.
COMPOSE_PASSWORDS = {
    "POSTGRES_PASSWORD": "pg-test-pw",
    "REDIS_PASSWORD": "redis-test-pw",
    "CLICKHOUSE_PASSWORD": "ch-test-pw",
    "CLICKHOUSE_DASHBOARD_PASSWORD": "ch-dash-test-pw",
}
# The secrets the services themselves require (32+ characters, see shared settings).
COMPOSE_SECRETS = {
    "WATCHLLM_ANALYTICS_QUERY_TOKEN": "analytics-query-token-for-the-deploy-tests",
    "WATCHLLM_CACHE_KEY_SECRET": "cache-key-secret-for-the-deploy-tests-0000",
}
COMPOSE_TEST_ENV = {**COMPOSE_PASSWORDS, **COMPOSE_SECRETS}


@dataclass(frozen=True)
class Service:
    name: str  # compose service, k8s Deployment/Service and container name
    settings: str  # "module:Class"
    package: str  # import name, run as `python -m package`
    distribution: str
    dockerfile: str
    image: str
    liveness: str | None
    readiness: str | None

    @property
    def settings_class(self) -> type[BaseSettings]:
        module, _, name = self.settings.partition(":")
        cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
        return cls

    @property
    def port(self) -> int:
        field = self.settings_class.model_fields[f"{self.name}_port"]
        port: int = field.default
        return port

    @property
    def metrics_port(self) -> int | None:
        """The port of its /metrics listener (apart from the API port), if it has one."""
        field = self.settings_class.model_fields.get(f"{self.name}_metrics_port")
        return None if field is None else int(field.default)


def _service(name: str, settings: str, liveness: str, readiness: str) -> Service:
    return Service(
        name=name,
        settings=settings,
        package=f"watchllm_{name}",
        distribution=f"watchllm-{name}",
        dockerfile=f"services/{name}/Dockerfile",
        image=f"watchllm/{name}",
        liveness=liveness,
        readiness=readiness,
    )


SERVICES = {
    s.name: s
    for s in (
        _service("gateway", "watchllm_gateway.settings:GatewaySettings", "/livez", "/readyz"),
        _service("limiter", "watchllm_limiter.settings:LimiterSettings", "/livez", "/readyz"),
        _service(
            "cache", "watchllm_cache.service.settings:CacheServiceSettings", "/livez", "/readyz"
        ),
        _service("analytics", "watchllm_analytics.settings:AnalyticsSettings", "/livez", "/readyz"),
        _service(
            "dashboard",
            "watchllm_dashboard.settings:DashboardSettings",
            "/_stcore/health",
            "/_stcore/health",
        ),
    )
}
# The operator image: `watchllm migrate` (compose service `migrate`, k8s Job container).
CLI = Service(
    name="migrate",
    settings="watchllm_shared.cli.settings:CliSettings",
    package="watchllm_shared",
    distribution="watchllm-shared",
    dockerfile="shared/Dockerfile",
    image="watchllm/cli",
    liveness=None,
    readiness=None,
)
ALL_IMAGES = {**SERVICES, CLI.name: CLI}


def field_env_names(cls: type[BaseSettings]) -> dict[str, list[str]]:
    """Field name -> the environment variables that set it (first: the documented one)."""
    prefix = cls.model_config.get("env_prefix", "")
    assert not cls.model_config.get("case_sensitive"), "names below assume case-insensitive"
    names: dict[str, list[str]] = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names[field_name] = [str(choice).upper() for choice in alias.choices]
        elif isinstance(alias, str):
            names[field_name] = [alias.upper()]
        else:
            names[field_name] = [f"{prefix}{field_name}".upper()]
    return names


@functools.cache
def otel_standard_variables() -> frozenset[str]:
    """OTEL_* variables the OpenTelemetry SDK itself reads."""
    import opentelemetry.environment_variables as api_vars
    import opentelemetry.sdk.environment_variables as sdk_vars

    return frozenset(
        getattr(module, name)
        for module in (api_vars, sdk_vars)
        for name in dir(module)
        if name.startswith("OTEL_")
    )


def _default_route_keys() -> set[str]:
    """The provider key variables the default routes read."""
    from watchllm_gateway.routing.schema import DEFAULT_DOCUMENT

    return {d.api_key_env for m in DEFAULT_DOCUMENT.models for d in m.deployments
            if d.api_key_env}  # fmt: skip


@functools.cache
def read_variables(service: str) -> frozenset[str]:
    """Every environment variable this service's code reads (all aliases)."""
    spec = ALL_IMAGES[service]
    names = {n for group in field_env_names(spec.settings_class).values() for n in group}
    if service == "gateway":
        names |= _default_route_keys()
    return frozenset(names)


@functools.cache
def documented_variables() -> frozenset[str]:
    """The names .env.example must document: the first alias of every field, everywhere."""
    names: set[str] = set()
    for spec in ALL_IMAGES.values():
        names |= {group[0] for group in field_env_names(spec.settings_class).values()}
    names |= _default_route_keys()
    return frozenset(names)


def is_read_by(service: str, variable: str) -> bool:
    return variable in read_variables(service) or variable in otel_standard_variables()


# ---- docker-compose.yml -------------------------------------------------------------


def docker_compose_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` in a clean environment (no .env file is read: the tests
    pass --env-file explicitly or point at an empty one)."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    return subprocess.run(
        ["docker-compose", "--project-directory", str(REPO), *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def compose_raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def compose_interpolated_variables() -> dict[str, bool]:
    """Variables docker-compose.yml interpolates -> whether it requires them (``:?``)."""
    found: dict[str, bool] = {}
    for name, operator in re.findall(r"\$\{([A-Z0-9_]+)(:?[?-])?", COMPOSE_FILE.read_text()):
        found[name] = found.get(name, False) or operator in (":?", "?")
    return found


def environment_dict(environment: Any) -> dict[str, str]:
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {k: "" if v is None else str(v) for k, v in (environment or {}).items()}


# ---- .env.example --------------------------------------------------------------------

_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class EnvEntry:
    name: str
    value: str
    commented: bool


def env_example() -> dict[str, EnvEntry]:
    entries: dict[str, EnvEntry] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line)
        if match is None:
            continue
        comment, name, value = match.groups()
        assert name not in entries, f".env.example lists {name} twice"
        entries[name] = EnvEntry(name, value, comment is not None)
    return entries


# ---- Dockerfiles ---------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def dockerfile_stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile; continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = re.sub(r"\s+", " ", rest).strip()
        if instruction == "FROM":
            parts = rest.split()
            base = parts[0]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base, []))
        elif not stages and instruction == "ARG":
            arg_name, _, default = rest.partition("=")
            args[arg_name] = default
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


def env_instruction_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            name, _, value = token.partition("=")
            values[name] = value
    return values


def dockerignore_excludes(relative: str) -> bool:
    """Whether .dockerignore keeps ``relative`` (or a parent folder) out of the context."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = _dockerignore_regex(body.strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)

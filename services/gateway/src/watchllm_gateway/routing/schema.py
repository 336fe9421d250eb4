"""The routes file: models, their deployments and fallbacks, validated with precise errors.

One schema, two spellings. ``WATCHLLM_ROUTES_FILE`` names a YAML file; ``WATCHLLM_ROUTES``
holds the same document as JSON (``{"models": [...]}``, or just the list). The list may
also hold routes of the original shape (``{"pattern", "provider", "base_url",
"api_key_env", "models"}``): each is one model entry with one deployment.

    models:
      - name: gpt-4o-mini            # what callers ask for; fnmatch patterns, first match wins
        deployments:
          - provider: openai         # openai | anthropic | azure
            base_url: http://127.0.0.1:9001/v1
            api_key_env: OPENAI_KEY_A
            weight: 3
            model: gpt-4o-mini       # upstream model name; default: the requested one
            name: openai-a           # for /metrics and events; default "<entry name>[<index>]"
            rpm: 500                 # the provider's requests per minute for this key
            tpm: 200000              # and tokens per minute: full deployments are skipped
          - provider: azure          # https://{resource}.openai.azure.com, key in api-key
            base_url: https://example.openai.azure.com
            api_version: "2024-10-21"          # required for azure
            azure_deployment: prod-4o-mini     # default: the upstream model name
          - provider: anthropic
            base_url: https://api.anthropic.com
            default_max_tokens: 8192 # for OpenAI-shaped callers that give none (4096)
        fallbacks: [claude-haiku-4-5]
        context_window_fallbacks: [gpt-4.1-mini]  # only for a context-length 400
        models: [gpt-4o-mini]        # ids GET /v1/models lists for this entry

Everything wrong is reported at once, each problem naming its entry (by index and name)
and field: ``models[0] 'gpt-4o-mini': deployments[1].weight: Input should be greater
than 0``. Unknown fields are refused (a typo must not silently change routing), as are
duplicate deployment names and fallbacks that no entry serves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from watchllm_gateway.settings import ProviderKind

_NAME = re.compile(r"[A-Za-z0-9._:@/+\-\[\]]{1,80}")
_LEGACY_FIELDS = {"pattern", "provider", "base_url", "api_key_env", "models"}
# Fields that mean something for one provider only: elsewhere they are refused.
_ONLY_FOR = {
    "api_version": ProviderKind.AZURE,
    "azure_deployment": ProviderKind.AZURE,
    "default_max_tokens": ProviderKind.ANTHROPIC,
}


class RoutesError(ValueError):
    """A routes document that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems) if len(problems) == 1
                         else f"{source}:\n" + "\n".join(f"  - {p}" for p in problems))  # fmt: skip


class DeploymentConfig(BaseModel):
    """One upstream that can serve a model entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: ProviderKind
    base_url: str = Field(min_length=1)
    api_key_env: str | None = None
    weight: float = Field(default=1.0, gt=0, le=1_000_000)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    name: str | None = None
    api_version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._\-]{1,40}$")
    azure_deployment: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._\-]{1,64}$")
    default_max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    # Across every replica (``capacity``): a full deployment is skipped.
    rpm: int | None = Field(default=None, ge=1, le=100_000_000)
    tpm: int | None = Field(default=None, ge=1, le=1_000_000_000_000)

    @model_validator(mode="after")
    def _provider_fields(self) -> DeploymentConfig:
        for field, provider in _ONLY_FOR.items():
            if getattr(self, field) is not None and self.provider is not provider:
                raise ValueError(f"{field} is only for provider {provider.value!r}")
        if self.provider is ProviderKind.AZURE and self.api_version is None:
            raise ValueError("provider 'azure' needs api_version (e.g. \"2024-10-21\")")
        return self

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("name")
    @classmethod
    def _label_safe(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError("1-80 characters of letters, digits and . _ : @ / + - [ ]")
        return value


class ModelConfig(BaseModel):
    """Models matching ``name`` (fnmatch), served by ``deployments``, then ``fallbacks``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def deployment_name(self, index: int) -> str:
        given = self.deployments[index].name
        return given if given is not None else f"{self.name}[{index}]"


class RoutesDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[ModelConfig, ...] = Field(min_length=1)

    def entry_for(self, model: str, api: ProviderKind | None = None) -> ModelConfig | None:
        """The first entry matching ``model`` (with a deployment speaking ``api``)."""
        for entry in self.models:
            if fnmatchcase(model, entry.name) and (
                api is None or any(d.provider is api for d in entry.deployments)
            ):
                return entry
        return None


DEFAULT_DOCUMENT = RoutesDocument.model_validate(
    {
        "models": [
            {
                "name": "claude-*",
                "deployments": [{"provider": "anthropic", "base_url": "https://api.anthropic.com",
                                 "api_key_env": "ANTHROPIC_API_KEY"}],
                "models": ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
            },
            {
                "name": "*",
                "deployments": [{"provider": "openai", "base_url": "https://api.openai.com/v1",
                                 "api_key_env": "OPENAI_API_KEY"}],
                "models": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini",
                           "text-embedding-3-small"],
            },
        ]
    }
)  # fmt: skip


def parse_text(text: str, source: str, *, json_only: bool = False) -> RoutesDocument:
    """A routes document from YAML (or JSON, which is YAML) text."""
    try:
        raw = orjson.loads(text) if json_only else yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        raise RoutesError(source, [f"not valid JSON: {exc}"]) from exc
    except yaml.YAMLError as exc:
        raise RoutesError(source, [f"not valid YAML: {exc}"]) from exc
    return validate(raw, source)


def validate(raw: Any, source: str) -> RoutesDocument:
    """A routes document from parsed data: ``{"models": [...]}``, a list of model entries,
    original-shape routes, or ``RouteConfig`` objects."""
    data = _normalised(raw)
    if not isinstance(data, dict):
        raise RoutesError(source, ["expected a mapping with a 'models' list, or a list"])
    try:
        document = RoutesDocument.model_validate(data)
    except ValidationError as exc:
        raise RoutesError(source, [_describe(e, data) for e in _own(exc.errors())]) from None
    problems = _cross_check(document)
    if problems:
        raise RoutesError(source, problems)
    return document


def _normalised(raw: Any) -> Any:
    if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        return {"models": [_entry(item) for item in raw]}
    return raw


def _entry(item: Any) -> Any:
    """A model entry; an original-shape route (it has ``pattern``) becomes one."""
    if isinstance(item, BaseModel):
        item = item.model_dump(mode="json")
    if not isinstance(item, Mapping) or "pattern" not in item:
        return item
    unknown = sorted(set(item) - _LEGACY_FIELDS)
    deployment = {k: item[k] for k in ("provider", "base_url", "api_key_env") if k in item}
    entry: dict[str, Any] = {"name": item["pattern"], "deployments": [deployment],
                             "models": item.get("models", [])}  # fmt: skip
    for name in unknown:  # refused by the schema, under the name the operator wrote
        entry[name] = item[name]
    return entry


def _own(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Without "too short" for a list whose items failed (pydantic counts only the
    items that passed): the items' own errors say what is wrong."""
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e for e in errors
        if e["type"] != "too_short"
        or not any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == tuple(e["loc"]) for o in locs)
    ]  # fmt: skip


def _describe(error: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    loc = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "too_short":
        message = "needs at least one entry"
    if len(loc) < 2 or loc[0] != "models" or not isinstance(loc[1], int):
        return f"{_path(loc) or 'document'}: {message}"
    index = loc[1]
    entry = data["models"][index] if isinstance(data.get("models"), list) else None
    name = entry.get("name") if isinstance(entry, Mapping) else None
    label = f"models[{index}]" + (f" {name!r}" if isinstance(name, str) else "")
    return f"{label}: {_path(loc[2:]) or 'entry'}: {message}"


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _cross_check(document: RoutesDocument) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(document.models):
        label = f"models[{index}] {entry.name!r}"
        for d_index in range(len(entry.deployments)):
            name = entry.deployment_name(d_index)
            where = f"{label}: deployments[{d_index}].name"
            if name in seen:
                problems.append(f"{where}: {name!r} is already the name of {seen[name]}")
            seen.setdefault(name, f"{label} deployments[{d_index}]")
            limited = entry.deployments[d_index].rpm or entry.deployments[d_index].tpm
            if limited and ("{" in name or "}" in name):  # its Redis keys' hash tag
                problems.append(f"{where}: a deployment with rpm or tpm needs a name"
                                " without braces")  # fmt: skip
        for field in ("fallbacks", "context_window_fallbacks"):
            for f_index, fallback in enumerate(getattr(entry, field)):
                where = f"{label}: {field}[{f_index}]"
                if fallback == entry.name:
                    problems.append(f"{where}: {fallback!r} is the entry itself")
                elif document.entry_for(fallback) is None:
                    problems.append(f"{where}: no entry serves the model {fallback!r}")
    return problems

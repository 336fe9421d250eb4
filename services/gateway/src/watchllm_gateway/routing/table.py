"""Which deployments serve a model: the first entry whose name (an fnmatch pattern)
matches the model; then the entry's fallbacks, each resolved the same way, in order.

Chat endpoints (``/v1/chat/completions``, ``/v1/messages``) reach every deployment:
``translation`` turns a request into the other shape when the deployment speaks it. An
endpoint that cannot be translated (``/v1/embeddings``) reaches only deployments of its
own shape: there a model that only matches entries of the other shape gets a 400 naming
the endpoint that serves it, and such a fallback is skipped. A model no entry matches
gets a 404 (OpenAI's ``model_not_found``).

An ``azure`` deployment speaks OpenAI's shape (``Deployment.api``) at Azure's paths:
``{base_url}/openai/deployments/{azure_deployment}{path}?api-version={api_version}``,
``azure_deployment`` defaulting to the upstream model name (``Deployment.path``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import quote

from pydantic import SecretStr

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.routing.schema import RoutesDocument
from watchllm_gateway.settings import ProviderKind

_WILDCARD = re.compile(r"[*?\[]")
_ENDPOINT_OF = {
    ProviderKind.OPENAI: "/v1/chat/completions",
    ProviderKind.ANTHROPIC: "/v1/messages",
}


@dataclass(frozen=True, slots=True)
class Deployment:
    """One upstream of a model entry, its provider key resolved from the environment."""

    name: str  # unique in the table: labels metrics, names the deployment in events
    provider: ProviderKind
    base_url: str
    api_key: SecretStr | None
    weight: float = 1.0
    model: str | None = None  # the upstream model name; None: the one asked for
    api_version: str | None = None  # azure only
    azure_deployment: str | None = None  # azure only; None: the upstream model name
    default_max_tokens: int | None = None  # anthropic: for callers that gave none
    rpm: int | None = None  # requests per minute across replicas (``capacity``)
    tpm: int | None = None  # tokens per minute across replicas (``capacity``)
    # The API shape the deployment speaks (azure: OpenAI's). A field, read per request.
    api: ProviderKind = field(init=False, repr=False, compare=False)
    limited: bool = field(init=False, repr=False, compare=False)  # has rpm or tpm

    def __post_init__(self) -> None:
        azure = self.provider is ProviderKind.AZURE
        object.__setattr__(self, "api", ProviderKind.OPENAI if azure else self.provider)
        object.__setattr__(self, "limited", self.rpm is not None or self.tpm is not None)

    def path(self, path: str, model: str) -> str:
        """What follows ``base_url`` for the API path ``path`` and upstream ``model``."""
        if self.provider is not ProviderKind.AZURE:
            return path
        deployment = quote(self.azure_deployment or model, safe="")
        version = quote(self.api_version or "", safe="")
        return f"/openai/deployments/{deployment}{path}?api-version={version}"

    def __repr__(self) -> str:  # never the key
        return f"Deployment({self.name!r}, {self.provider.value}, {self.base_url!r})"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    pattern: str
    deployments: tuple[Deployment, ...]
    fallbacks: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # listed by GET /v1/models
    context_fallbacks: tuple[str, ...] = ()  # only for a context-length 400

    def speaking(self, api: ProviderKind) -> tuple[Deployment, ...]:
        return tuple(d for d in self.deployments if d.api is api)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Where one model of a request's chain can go: the model name sent upstream (unless a
    deployment names its own) and the deployments speaking the endpoint's protocol."""

    model: str
    deployments: tuple[Deployment, ...]


class Chain(tuple[Candidates, ...]):
    """A request's candidates in order, and where it goes instead when an answer says
    the prompt does not fit the model's context window (``context_fallbacks``)."""

    context_fallbacks: tuple[Candidates, ...] = ()
    shapes: frozenset[ProviderKind] | None = None  # every deployment's ``api``, both lists


_CHAINS_KEPT = 4096  # model names are the callers' strings: a bounded memo


class ModelRouter:
    def __init__(self, routes: tuple[ModelRoute, ...]) -> None:
        self._set(routes)

    def _set(self, routes: tuple[ModelRoute, ...]) -> None:
        self._routes = routes
        self._chains: dict[tuple[str, ProviderKind | None], Chain] = {}
        self._speaking: dict[ProviderKind | None, list[tuple[ModelRoute, tuple[Deployment, ...]]]]
        self._speaking = {api: [(r, r.speaking(api)) for r in routes] for api in ProviderKind}
        self._speaking[None] = [(r, r.deployments) for r in routes]  # any shape: translated

    def replace(self, other: ModelRouter) -> None:
        """Route by ``other``'s table from now on (a reload). Requests already routed
        keep the chain they got; deployments keep their health by name (``cooldown``)."""
        self._set(other._routes)

    @classmethod
    def from_document(
        cls, document: RoutesDocument, secret: Callable[[str | None], SecretStr | None]
    ) -> ModelRouter:
        """``secret(name)``: the value of the environment variable ``name`` (``settings``)."""
        routes = tuple(
            ModelRoute(
                pattern=entry.name,
                deployments=tuple(
                    Deployment(
                        entry.deployment_name(i),
                        d.provider,
                        d.base_url,
                        secret(d.api_key_env),
                        d.weight,
                        d.model,
                        d.api_version,
                        d.azure_deployment,
                        d.default_max_tokens,
                        d.rpm,
                        d.tpm,
                    )  # fmt: skip
                    for i, d in enumerate(entry.deployments)
                ),
                fallbacks=entry.fallbacks,
                models=entry.models,
                context_fallbacks=entry.context_window_fallbacks,
            )
            for entry in document.models
        )
        return cls(routes)

    def resolve(self, model: str, api: ProviderKind, translate: bool = False) -> ModelRoute:
        route = self._match(model, None if translate else api)
        if route is not None:
            return route
        for other in self._routes:
            if fnmatchcase(model, other.pattern):
                provider = other.deployments[0].api
                raise GatewayError(
                    400,
                    "wrong_endpoint",
                    f"model {model!r} is served by a {provider.value} upstream;"
                    f" call {_ENDPOINT_OF[provider]} instead",
                )
        raise GatewayError(404, "model_not_found", f"The model {model!r} does not exist")

    def chain(self, model: str, api: ProviderKind, translate: bool = False) -> Chain:
        """The model's deployments, then each fallback's that this endpoint can reach
        (``translate``: every deployment, whatever its shape); a model visited once is
        not visited again. Raises like ``resolve``. Memoised: the table never changes,
        and matching patterns costs microseconds per request."""
        reach = None if translate else api
        known = self._chains.get((model, reach))
        if known is not None:
            return known
        route = self.resolve(model, api, translate)
        deployments = route.deployments if translate else route.speaking(api)
        found = Chain((Candidates(model, deployments), *self._each(route.fallbacks, model, reach)))
        found.context_fallbacks = tuple(self._each(route.context_fallbacks, model, reach))
        every = (*found, *found.context_fallbacks)
        found.shapes = frozenset(d.api for c in every for d in c.deployments)
        if len(self._chains) >= _CHAINS_KEPT:
            self._chains.clear()
        self._chains[(model, reach)] = found
        return found

    def _each(
        self, models: tuple[str, ...], requested: str, api: ProviderKind | None
    ) -> list[Candidates]:
        found, seen = [], {requested}
        for name in models:
            target = self._match(name, api) if name not in seen else None
            if target is not None:
                seen.add(name)
                reached = target.deployments if api is None else target.speaking(api)
                found.append(Candidates(name, reached))
        return found

    def _match(self, model: str, api: ProviderKind | None) -> ModelRoute | None:
        for route, speaking in self._speaking[api]:
            if speaking and fnmatchcase(model, route.pattern):
                return route
        return None

    def deployments(self) -> list[Deployment]:
        return [d for route in self._routes for d in route.deployments]

    def configured_models(self) -> set[str]:
        """Model names the operator wrote down: each entry's ``models``, its name when it
        is a literal name (no ``*``, ``?`` or ``[``), and its deployments' upstream names."""
        names = {model for route in self._routes for model in route.models}
        names.update(r.pattern for r in self._routes if not _WILDCARD.search(r.pattern))
        names.update(d.model for d in self.deployments() if d.model is not None)
        return names

    def listed_models(self) -> list[tuple[str, ProviderKind]]:
        seen: dict[str, ProviderKind] = {}
        for route in self._routes:
            for model in route.models:
                seen.setdefault(model, route.deployments[0].provider)
        return list(seen.items())

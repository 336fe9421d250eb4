"""Which deployments serve a model: the first entry whose name (an fnmatch pattern)
matches the model and that has a deployment speaking the endpoint's protocol; then the
entry's fallbacks, each resolved the same way, in order.

A model that only matches entries of the other protocol gets a 400 naming the endpoint
that serves it; a model no entry matches gets a 404 (OpenAI's ``model_not_found``). A
fallback no entry serves on this endpoint's protocol is skipped: translating between
the OpenAI and Anthropic shapes is not built yet, so a chain only crosses providers
once it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

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
        return tuple(d for d in self.deployments if d.provider is api)


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


_CHAINS_KEPT = 4096  # model names are the callers' strings: a bounded memo


class ModelRouter:
    def __init__(self, routes: tuple[ModelRoute, ...]) -> None:
        self._set(routes)

    def _set(self, routes: tuple[ModelRoute, ...]) -> None:
        self._routes = routes
        self._chains: dict[tuple[str, ProviderKind], Chain] = {}
        self._speaking = {
            api: [(r, r.speaking(api)) for r in routes] for api in ProviderKind
        }  # fmt: skip

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

    def resolve(self, model: str, api: ProviderKind) -> ModelRoute:
        route = self._match(model, api)
        if route is not None:
            return route
        for other in self._routes:
            if fnmatchcase(model, other.pattern):
                provider = other.deployments[0].provider
                raise GatewayError(
                    400,
                    "wrong_endpoint",
                    f"model {model!r} is served by a {provider.value} upstream;"
                    f" call {_ENDPOINT_OF[provider]} instead",
                )
        raise GatewayError(404, "model_not_found", f"The model {model!r} does not exist")

    def chain(self, model: str, api: ProviderKind) -> Chain:
        """The model's deployments, then each fallback's that this endpoint can reach;
        a model visited once is not visited again. Raises like ``resolve``. Memoised:
        the table never changes, and matching patterns costs microseconds per request."""
        known = self._chains.get((model, api))
        if known is not None:
            return known
        route = self.resolve(model, api)
        found = Chain(
            (Candidates(model, route.speaking(api)), *self._each(route.fallbacks, model, api))
        )
        found.context_fallbacks = tuple(self._each(route.context_fallbacks, model, api))
        if len(self._chains) >= _CHAINS_KEPT:
            self._chains.clear()
        self._chains[(model, api)] = found
        return found

    def _each(self, models: tuple[str, ...], requested: str, api: ProviderKind) -> list[Candidates]:
        found, seen = [], {requested}
        for name in models:
            target = self._match(name, api) if name not in seen else None
            if target is not None:
                seen.add(name)
                found.append(Candidates(name, target.speaking(api)))
        return found

    def _match(self, model: str, api: ProviderKind) -> ModelRoute | None:
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

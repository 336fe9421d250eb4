"""Which upstream serves a model: the first configured route whose pattern (fnmatch)
matches the model and whose provider speaks the endpoint's protocol.

A model that only matches routes of the other protocol gets a 400 naming the endpoint
that serves it; a model no route matches gets a 404 (OpenAI's ``model_not_found``).
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.settings import ProviderKind, Route

_WILDCARD = re.compile(r"[*?\[]")
_ENDPOINT_OF = {
    ProviderKind.OPENAI: "/v1/chat/completions",
    ProviderKind.ANTHROPIC: "/v1/messages",
}


class ModelRouter:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        self._routes = routes

    def resolve(self, model: str, api: ProviderKind) -> Route:
        other: Route | None = None
        for route in self._routes:
            if not fnmatchcase(model, route.pattern):
                continue
            if route.provider is api:
                return route
            other = other or route
        if other is not None:
            raise GatewayError(
                400,
                "wrong_endpoint",
                f"model {model!r} is served by a {other.provider.value} upstream;"
                f" call {_ENDPOINT_OF[other.provider]} instead",
            )
        raise GatewayError(404, "model_not_found", f"The model {model!r} does not exist")

    def configured_models(self) -> set[str]:
        """Model names the operator wrote down: each route's ``models`` and its pattern
        when it is a literal name (no ``*``, ``?`` or ``[``)."""
        names = {model for route in self._routes for model in route.models}
        names.update(r.pattern for r in self._routes if not _WILDCARD.search(r.pattern))
        return names

    def listed_models(self) -> list[tuple[str, ProviderKind]]:
        seen: dict[str, ProviderKind] = {}
        for route in self._routes:
            for model in route.models:
                seen.setdefault(model, route.provider)
        return list(seen.items())

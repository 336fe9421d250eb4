"""One caller request as each deployment of its chain gets it, and its answer back.

A deployment speaking the caller's shape gets the body as ``endpoints`` prepares it,
with the caller's provider headers; one speaking the other shape gets the translated
body (``to_anthropic``/``to_openai``, computed once per request), the path of its own
API and only the headers that API needs (``anthropic-version``: the gateway's default;
a caller's ``anthropic-beta`` asks for features no OpenAI deployment has: 400).
An Anthropic deployment gets ``max_tokens`` = its ``default_max_tokens``
(``DEFAULT_MAX_TOKENS``) when an OpenAI caller gave none.

``reachable`` drops from a chain the deployments this request cannot be translated for.
When the requested model is left with none, the request is refused with the
translation's 400 (naming the field) before anything is charged; a fallback model left
with none is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from watchllm_gateway.endpoints import CHAT_COMPLETIONS, MESSAGES, EndpointSpec
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.routing import Candidates, Deployment, Dispatched
from watchllm_gateway.routing.table import Chain
from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.translation.answers import (
    anthropic_answer,
    anthropic_error,
    azure_error,
    openai_answer,
    openai_error,
)
from watchllm_gateway.translation.common import untranslatable
from watchllm_gateway.translation.response import Direction, TranslatedResponse
from watchllm_gateway.translation.streams import AnthropicEvents, OpenAIChunks
from watchllm_gateway.translation.to_anthropic import anthropic_request
from watchllm_gateway.translation.to_openai import openai_request
from watchllm_gateway.upstream import UpstreamResponse, provider_headers

DEFAULT_MAX_TOKENS = 4096  # every Claude model can write at least this many tokens

_TRANSLATE = {ProviderKind.ANTHROPIC: anthropic_request, ProviderKind.OPENAI: openai_request}
_PATH = {ProviderKind.ANTHROPIC: MESSAGES.upstream_path,
         ProviderKind.OPENAI: CHAT_COMPLETIONS.upstream_path}  # fmt: skip
_BACK = {  # keyed by the caller's shape
    ProviderKind.OPENAI: Direction(openai_answer, openai_error, OpenAIChunks),
    ProviderKind.ANTHROPIC: Direction(anthropic_answer, anthropic_error, AnthropicEvents),
}
_AZURE_ERRORS = Direction(lambda body: body, azure_error, OpenAIChunks)  # errors only


class Outbound:
    __slots__ = ("_spec", "_body", "_native", "_wants_usage", "_forwarded", "_translated")

    def __init__(self, spec: EndpointSpec, body: dict[str, Any], forwarded: Mapping[str, str]):
        self._spec = spec
        self._body = body
        self._native: bytes | None = None  # encoded at the first attempt (not on a cache hit)
        self._wants_usage = False
        self._forwarded = forwarded
        self._translated: dict[ProviderKind, dict[str, Any] | GatewayError] = {}

    def _encoded(self) -> bytes:
        if self._native is None:
            self._native, self._wants_usage = self._spec.prepare(self._body)
        return self._native

    @property
    def caller_wants_usage(self) -> bool:
        """Whether an OpenAI caller asked for a stream's usage chunk (``endpoints``)."""
        self._encoded()
        return self._wants_usage

    def request(self, deployment: Deployment, model: str) -> tuple[str, bytes, Mapping[str, str]]:
        """Path (after the deployment's base URL), body and headers for one attempt."""
        shape = deployment.api
        if shape is self._spec.api:
            body = (
                self._encoded() if model == self._body["model"]
                else self._spec.prepare({**self._body, "model": model})[0]
            )  # fmt: skip
            return deployment.path(self._spec.upstream_path, model), body, self._forwarded
        translated = self._translation(shape)
        if isinstance(translated, GatewayError):
            raise translated  # ``reachable`` keeps such deployments out of the chain
        out = {**translated, "model": model}
        if shape is ProviderKind.ANTHROPIC and "max_tokens" not in out:
            out["max_tokens"] = deployment.default_max_tokens or DEFAULT_MAX_TOKENS
        path = deployment.path(_PATH[shape], model)
        return path, orjson.dumps(out), provider_headers(shape, {})

    def _translation(self, shape: ProviderKind) -> dict[str, Any] | GatewayError:
        known = self._translated.get(shape)
        if known is None:
            try:
                if "anthropic-beta" in self._forwarded:  # beta features: no equivalent
                    raise untranslatable(shape, "anthropic-beta", "a header for Anthropic betas")
                known = _TRANSLATE[shape](self._body)
            except GatewayError as refused:
                known = refused
            self._translated[shape] = known
        return known

    def reachable(self, chain: Sequence[Candidates]) -> Sequence[Candidates]:
        """``chain`` without the deployments this request cannot be translated for."""
        api = self._spec.api
        shapes = getattr(chain, "shapes", None)  # known for a router's chains
        if shapes is not None and len(shapes) == 1 and api in shapes:
            return chain  # nothing to translate: the common case
        fallbacks = getattr(chain, "context_fallbacks", ())
        if all(d.api is api for c in (*chain, *fallbacks) for d in c.deployments):
            return chain
        kept = Chain(self._keep(chain))
        if not kept or kept[0].model != chain[0].model:
            refusal = next(
                t for d in chain[0].deployments
                if isinstance(t := self._translation(d.api), GatewayError)
            )  # fmt: skip
            raise refusal
        kept.context_fallbacks = tuple(self._keep(fallbacks))
        return kept

    def _keep(self, chain: Sequence[Candidates]) -> list[Candidates]:
        kept = []
        for candidates in chain:
            usable = tuple(
                d for d in candidates.deployments
                if d.api is self._spec.api or not isinstance(self._translation(d.api), GatewayError)
            )  # fmt: skip
            if usable:
                kept.append(Candidates(candidates.model, usable))
        return kept

    def answer(self, dispatched: Dispatched) -> UpstreamResponse:
        """The answer as the caller reads it: translated when its deployment speaks the
        other shape; an Azure error in OpenAI's shape."""
        deployment = dispatched.deployment
        if deployment.api is not self._spec.api:
            return TranslatedResponse(dispatched.answer, _BACK[self._spec.api])
        if deployment.provider is ProviderKind.AZURE and dispatched.answer.status >= 400:
            return TranslatedResponse(dispatched.answer, _AZURE_ERRORS)
        return dispatched.answer

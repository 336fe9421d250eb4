"""What differs between the proxied endpoints: protocol, upstream path, validation,
how usage is read, and how the upstream body is prepared.

Validation is deliberately shallow: it rejects what the gateway itself needs to be
right (a JSON object, a model name of at most ``MAX_MODEL_CHARS``, the messages or
input list, a boolean ``stream``) and leaves the rest of the schema to the provider,
whose 400 is passed through in the same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from watchllm_gateway.errors import bad_request
from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.usage import Usage, usage_from_anthropic, usage_from_openai

# Longer than any provider's model id (OpenAI fine-tunes ~80, Bedrock ARNs ~140): the
# name is recorded in every event, so the caller's string is bounded before that.
MAX_MODEL_CHARS = 256


def _require_model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string", "missing_model")
    if len(model) > MAX_MODEL_CHARS:
        raise bad_request(f"'model' is longer than {MAX_MODEL_CHARS} characters", "invalid_model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", "invalid_stream")


def _require_messages(body: dict[str, Any]) -> None:
    _require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", "invalid_messages")
    if not all(isinstance(m, dict) for m in messages):
        raise bad_request("each entry of 'messages' must be an object", "invalid_messages")


def _validate_anthropic(body: dict[str, Any]) -> None:
    _require_messages(body)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request("'max_tokens' is required and must be a positive integer")


def _validate_embeddings(body: dict[str, Any]) -> None:
    _require_model(body)
    if body.get("stream"):
        raise bad_request("embeddings cannot be streamed", "invalid_stream")
    value = body.get("input")
    if not (isinstance(value, str | list) and value):
        raise bad_request("'input' must be a non-empty string or array", "invalid_input")


# The upstream gets the body as the gateway parsed it, never the caller's raw bytes: with
# a key given twice (``{"model": "a", …, "model": "b"}``) the gateway reads the last one
# and a provider may read the first, so the caller could pass the model allow-list with
# one model and be served (and billed, and cached) by another, or store one question's
# answer under another's cache key. Re-encoding costs about what parsing did.


def _openai_chat_body(body: dict[str, Any]) -> tuple[bytes, bool]:
    """Ask OpenAI-compatible upstreams for usage on streams; returns (body, caller_wants_usage)."""
    if not body.get("stream"):
        return orjson.dumps(body), False
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    wants = options.get("include_usage") is True
    if wants:
        return orjson.dumps(body), True
    options["include_usage"] = True
    return orjson.dumps({**body, "stream_options": options}), False


def _as_parsed(body: dict[str, Any]) -> tuple[bytes, bool]:
    return orjson.dumps(body), False


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    path: str
    api: ProviderKind
    upstream_path: str
    validate: Callable[[dict[str, Any]], None]
    usage_from_body: Callable[[Any], Usage]
    prepare: Callable[[dict[str, Any]], tuple[bytes, bool]]
    translatable: bool = True  # may go to a deployment of the other shape (``translation``)


CHAT_COMPLETIONS = EndpointSpec(
    "/v1/chat/completions", ProviderKind.OPENAI, "/chat/completions",
    _require_messages, usage_from_openai, _openai_chat_body,
)  # fmt: skip
EMBEDDINGS = EndpointSpec(
    "/v1/embeddings", ProviderKind.OPENAI, "/embeddings",
    _validate_embeddings, usage_from_openai, _as_parsed, translatable=False,
)  # fmt: skip
MESSAGES = EndpointSpec(
    "/v1/messages", ProviderKind.ANTHROPIC, "/v1/messages",
    _validate_anthropic, usage_from_anthropic, _as_parsed,
)  # fmt: skip

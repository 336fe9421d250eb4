"""What both directions share: the refusal of what cannot be translated, and the maps
between the two APIs' reasons for stopping and error types."""

from __future__ import annotations

from typing import Any

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.settings import ProviderKind

_PROVIDER_NAMES = {ProviderKind.OPENAI: "OpenAI", ProviderKind.ANTHROPIC: "Anthropic"}


def untranslatable(target: ProviderKind, where: str, why: str) -> GatewayError:
    """The 400 for a request field that has no faithful equivalent in ``target``'s API
    (``where`` names the field as the caller wrote it)."""
    name = _PROVIDER_NAMES[target]
    return GatewayError(
        400, "untranslatable_parameter",
        f"'{where}' cannot be sent to the model's {name} deployment: {why}",
    )  # fmt: skip


def is_default(value: Any, default: Any) -> bool:
    """A parameter left at its default (or null) asks for nothing to translate."""
    return value is None or value == default


# Anthropic ``stop_reason`` → OpenAI ``finish_reason``.
FINISH_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# OpenAI ``finish_reason`` → Anthropic ``stop_reason``. OpenAI does not say whether a
# "stop" came from a stop sequence, so it is always ``end_turn``.
STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic error ``type`` → OpenAI error ``type`` (the ``code`` keeps Anthropic's).
OPENAI_ERROR_TYPE = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "billing_error": "insufficient_quota",
    "timeout_error": "timeout_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
}
# HTTP status → Anthropic error ``type`` (what the Anthropic API answers with each).
ANTHROPIC_ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    return ANTHROPIC_ERROR_TYPE.get(status, fallback)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []

"""An Anthropic Messages request as an OpenAI chat-completions request.

Every field is translated, refused (400 ``untranslatable_parameter`` naming it), or
dropped on purpose; the table in docs/translation.md is the reference. In short:

- ``system`` → a first ``system`` message; user and assistant turns → the same roles;
  ``tool_result`` blocks → ``tool`` messages (before the turn's other content;
  ``is_error`` dropped: the result's text says what failed); ``tool_use`` blocks →
  assistant ``tool_calls``; text → text; images (base64 or URL) → ``image_url`` parts;
  documents, thinking and server-tool blocks → 400;
- ``max_tokens`` → ``max_completion_tokens``; ``temperature``, ``top_p``;
  ``stop_sequences`` → ``stop`` (at most 4); ``stream`` (with
  ``stream_options.include_usage``, so usage is always billed); ``metadata.user_id`` →
  ``user``; ``tools`` (custom ones) → function tools; ``tool_choice`` and
  ``disable_parallel_tool_use`` → ``tool_choice``/``parallel_tool_calls``;
- refused: ``top_k``, ``thinking`` (unless disabled), server tools, and any field not
  named here; dropped: ``cache_control`` (top level and on blocks: OpenAI caches
  prompts by itself) and ``service_tier``.
"""

from __future__ import annotations

from typing import Any

import orjson

from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.translation.common import as_dict, untranslatable

_TO = ProviderKind.OPENAI
_MAX_STOPS = 4  # OpenAI's limit
_DROPPED = frozenset({"service_tier", "cache_control"})  # OpenAI caches prompts by itself
_BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
}


def openai_request(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI body for an Anthropic body (validated by ``endpoints``); raises
    ``GatewayError`` 400 for what cannot be translated."""
    out: dict[str, Any] = {"model": body["model"], "messages": _conversation(body)}
    for key, value in body.items():
        if key in ("model", "messages", "system") or key in _DROPPED or value is None:
            continue
        if key == "max_tokens":
            out["max_completion_tokens"] = value
        elif key in ("temperature", "top_p"):
            out[key] = value
        elif key == "stop_sequences":
            if not isinstance(value, list) or len(value) > _MAX_STOPS:
                raise untranslatable(_TO, key, f"at most {_MAX_STOPS} stop sequences")
            if value:
                out["stop"] = value
        elif key == "stream":
            out["stream"] = value
            if value is True:
                out["stream_options"] = {"include_usage": True}
        elif key == "metadata":
            if not isinstance(value, dict) or value.keys() - {"user_id"}:
                raise untranslatable(_TO, key, "only metadata.user_id has an equivalent")
            if value.get("user_id") is not None:
                out["user"] = value["user_id"]
        elif key == "thinking":
            if not (isinstance(value, dict) and value.get("type") == "disabled"):
                raise untranslatable(_TO, key, "extended thinking has no equivalent")
        elif key not in ("tools", "tool_choice"):
            raise untranslatable(_TO, key, "it has no OpenAI equivalent")
    _tools(body, out)
    return out


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    tools = body.get("tools")
    if not tools:
        return
    out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise untranslatable(_TO, "tool_choice", "only auto, any, none or one tool")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
        raise untranslatable(_TO, where, "only custom (client) tools have an equivalent")
    if not isinstance(tool.get("name"), str):
        raise untranslatable(_TO, f"{where}.name", "a tool needs a name")
    for key in tool.keys() - {"type", "name", "description", "input_schema", "cache_control"}:
        raise untranslatable(_TO, f"{where}.{key}", "it has no OpenAI equivalent")
    function: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system, "system")})
    for index, message in enumerate(body["messages"]):
        where = f"messages[{index}]"
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise untranslatable(_TO, f"{where}.role", f"the role {role!r} has no equivalent")
        if message.keys() - {"role", "content"}:
            extra = sorted(message.keys() - {"role", "content"})[0]
            raise untranslatable(_TO, f"{where}.{extra}", "it has no OpenAI equivalent")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif not isinstance(content, list):
            raise untranslatable(_TO, f"{where}.content", "must be a string or a list of blocks")
        elif role == "user":
            messages.extend(_user_turn(content, f"{where}.content"))
        else:
            messages.append(_assistant_turn(content, f"{where}.content"))
    return messages


def _checked(block: Any, where: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    allowed = _BLOCK_KEYS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        raise untranslatable(_TO, where, f"a {kind!r} block has no OpenAI equivalent")
    for key in block.keys() - allowed:
        raise untranslatable(_TO, f"{where}.{key}", "it has no OpenAI equivalent")
    if kind == "text" and block.get("citations"):
        raise untranslatable(_TO, f"{where}.citations", "it has no OpenAI equivalent")
    assert isinstance(kind, str)
    return kind


def _text(content: Any, where: str) -> Any:
    """A system prompt or tool result: a string, or its text blocks as text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise untranslatable(_TO, where, "must be a string or a list of text blocks")
    parts = []
    for index, block in enumerate(content):
        if _checked(block, f"{where}[{index}]") != "text":
            raise untranslatable(_TO, f"{where}[{index}]", "only text blocks can go here")
        parts.append({"type": "text", "text": block.get("text")})
    return parts


def _user_turn(content: list[Any], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        at = f"{where}[{index}]"
        kind = _checked(block, at)
        if kind == "tool_result":
            text = _text(block.get("content") or "", f"{at}.content")
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                            "content": text})  # fmt: skip
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, at)}})
        else:
            raise untranslatable(_TO, at, f"a {kind} block cannot be in a user turn")
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _image_url(block: dict[str, Any], where: str) -> str:
    source = as_dict(block.get("source"))
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise untranslatable(_TO, f"{where}.source", "only base64 and URL images have an equivalent")


def _assistant_turn(content: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        at = f"{where}[{index}]"
        kind = _checked(block, at)
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            function = {"name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode()}  # fmt: skip
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        else:
            raise untranslatable(_TO, at, f"a {kind} block cannot be in an assistant turn")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message

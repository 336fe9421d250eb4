"""An OpenAI chat-completions request as an Anthropic Messages request.

Every field is translated, refused (400 ``untranslatable_parameter`` naming it), or
dropped on purpose; the table in docs/translation.md is the reference. In short:

- ``system``/``developer`` messages → ``system`` (in order, wherever they were);
  ``user``/``assistant`` → the same roles, consecutive turns of one role merged;
  ``tool`` messages → ``tool_result`` blocks of a user turn; assistant ``tool_calls``
  → ``tool_use`` blocks (their ``arguments`` must be a JSON object);
- text parts → text blocks; ``image_url`` parts (``data:`` or http(s) URLs) → image
  blocks (``detail`` dropped); audio and file parts → 400;
- ``max_completion_tokens``/``max_tokens`` → ``max_tokens`` (absent: the deployment's
  ``default_max_tokens``, set by ``outbound``); ``temperature`` (0-1 only; above 1 →
  400), ``top_p``, ``stop`` → ``stop_sequences``, ``stream``, ``user`` →
  ``metadata.user_id``;
- ``tools`` (functions) → ``tools`` (``strict`` dropped), ``tool_choice`` and
  ``parallel_tool_calls: false`` → ``tool_choice``;
- left at their defaults, ``n``, ``frequency_penalty``, ``presence_penalty``,
  ``logit_bias``, ``logprobs``, ``response_format: text``, ``modalities: [text]`` are
  accepted; asking for more is a 400, as is any other field;
- dropped: ``seed`` (best effort at OpenAI too), ``store``, ``metadata``,
  ``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options``
  (usage is always reported; ``streaming`` shows it only to callers who asked).
"""

from __future__ import annotations

from typing import Any

import orjson

from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.translation.common import is_default, untranslatable

_TO = ProviderKind.ANTHROPIC
_DROPPED = frozenset(
    {"seed", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier",
     "stream_options"}
)  # fmt: skip
_AT_DEFAULT = {
    "n": 1,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": {},
    "logprobs": False,
    "response_format": {"type": "text"},
    "modalities": ["text"],
}
_MESSAGE_KEYS = {
    "system": {"role", "content"},
    "developer": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}


def anthropic_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Anthropic body for an OpenAI chat body (validated by ``endpoints``); raises
    ``GatewayError`` 400 for what cannot be translated."""
    out: dict[str, Any] = {"model": body["model"]}
    system, out["messages"] = _conversation(body["messages"])
    if system:
        out["system"] = system
    for key, value in body.items():
        if key in ("model", "messages") or key in _DROPPED or value is None:
            continue
        if key in _AT_DEFAULT:
            if not is_default(value, _AT_DEFAULT[key]):
                raise untranslatable(_TO, key, f"only {orjson.dumps(_AT_DEFAULT[key]).decode()}"
                                     " (the default) has an equivalent")  # fmt: skip
        elif key in ("max_tokens", "max_completion_tokens"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise untranslatable(_TO, key, "must be a positive integer")
            out["max_tokens"] = value
        elif key == "temperature":
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise untranslatable(_TO, key, "Anthropic models take 0 to 1")
            out["temperature"] = value
        elif key == "top_p":
            out["top_p"] = value
        elif key == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise untranslatable(_TO, key, "must be a string or a list of strings")
            if stops:
                out["stop_sequences"] = stops
        elif key == "stream":
            out["stream"] = value
        elif key == "user":
            out["metadata"] = {"user_id": value}
        elif key not in ("tools", "tool_choice", "parallel_tool_calls"):
            raise untranslatable(_TO, key, "it has no Anthropic equivalent")
    _tools(body, out)
    return out


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    choice = _tool_choice(body.get("tool_choice"))  # checked even without tools
    tools = body.get("tools")
    if not tools:
        return
    out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
        choice = {"type": "auto", **choice, "disable_parallel_tool_use": True}
    if choice:
        out["tool_choice"] = choice


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise untranslatable(_TO, where, "only function tools have an equivalent")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise untranslatable(_TO, f"{where}.function", "needs a name")
    for key in function.keys() - {"name", "description", "parameters", "strict"}:
        raise untranslatable(_TO, f"{where}.function.{key}", "it has no Anthropic equivalent")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    out = {"name": function["name"], "input_schema": schema}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {}
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return {"type": "tool", "name": name}
    raise untranslatable(_TO, "tool_choice", "only auto, none, required or one function")


def _conversation(messages: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        allowed = _MESSAGE_KEYS.get(role) if isinstance(role, str) else None
        if allowed is None:
            raise untranslatable(_TO, f"{where}.role", f"the role {role!r} has no equivalent")
        for key in message.keys() - allowed:
            if message[key] is not None:
                raise untranslatable(_TO, f"{where}.{key}", "it has no Anthropic equivalent")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_text_blocks(content, f"{where}.content"))
            continue
        if role == "user":
            blocks = _user_blocks(content, f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        else:
            role, blocks = "user", [_tool_result(message, where)]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if len(system) == 1:
        return system[0]["text"], turns
    return system, turns


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise untranslatable(_TO, where, "must be a string or a list of parts")
    blocks = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise untranslatable(_TO, f"{where}[{index}]", "only text parts can go here")
        text = part.get("text", part.get("refusal"))
        if not isinstance(text, str):
            raise untranslatable(_TO, f"{where}[{index}]", "a text part needs its text")
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content, where)
    blocks = []
    for index, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}[{index}].image_url"))
        else:
            blocks.extend(_text_blocks([part], where))
    return blocks


def _image(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else None
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": data}}  # fmt: skip
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise untranslatable(_TO, where, "an image must be a base64 data: URL or an http(s) URL")


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content") or "", f"{where}.content")
    if message.get("refusal"):
        blocks.append({"type": "text", "text": message["refusal"]})
    for index, call in enumerate(message.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise untranslatable(_TO, at, "only function calls have an equivalent")
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except (orjson.JSONDecodeError, TypeError):
            arguments = None
        if not isinstance(arguments, dict):
            raise untranslatable(_TO, f"{at}.function.arguments", "must be a JSON object")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": arguments})  # fmt: skip
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    result["content"] = content if isinstance(content, str) else _text_blocks(
        content, f"{where}.content"
    )  # fmt: skip
    return result

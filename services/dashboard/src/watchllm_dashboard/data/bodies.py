"""Logged bodies (issue 17), read and made readable; no Streamlit.

:func:`read_bodies` runs the named query ``request_bodies`` (project-scoped: another
project's request id finds nothing); :func:`search_bodies` runs
``project_request_search`` (the project's requests in a window whose request or answer
contains a text, newest first, with excerpts). :func:`conversation` turns the stored request and
answer into what a person reads: the system prompt, the messages (role, text, tool calls,
tool results) and the answer, for both API shapes:

- OpenAI (``/v1/chat/completions``): ``system``/``developer`` messages are the system
  prompt; ``tool_calls`` of an assistant message and ``tool`` messages (their
  ``tool_call_id``); the answer is each choice's ``message``;
- Anthropic (``/v1/messages``): ``system`` (text or text blocks); ``tool_use`` and
  ``tool_result`` blocks; the answer is the message's ``content`` blocks.

A stream is stored assembled into the JSON answer it amounts to, so it reads the same.
A body that is not a JSON object (a stream the gateway could not assemble is stored as
its events' text; a body cut at the size cap ends with the truncation marker) comes back
as ``raw_request`` / ``raw_answer``, shown as stored. Images are named, never fetched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import pandas as pd
from pydantic import ValidationError

from watchllm_dashboard.data.analytics import AnalyticsReader
from watchllm_dashboard.data.window import TimeWindow
from watchllm_shared.contracts.body_queries import RequestBodiesParams, RequestSearchParams

PartKind = Literal["text", "tool_call", "tool_result", "other"]
SYSTEM_ROLES = ("system", "developer")
SEARCH_LIMIT = 50
SEARCH_TEXT_CHARS = 256  # as ``RequestSearchParams`` takes it


@dataclass(frozen=True, slots=True)
class LoggedBodies:
    request_id: str
    endpoint: str
    request: str
    response: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Part:
    kind: PartKind
    text: str
    label: str = ""  # a tool call's tool name; a tool result's call id


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Conversation:
    system: tuple[Part, ...] = ()
    messages: tuple[Message, ...] = ()
    answer: tuple[Message, ...] = ()
    raw_request: str | None = None  # the request as stored, when it is not readable
    raw_answer: str | None = None
    extras: dict[str, str] = field(default_factory=dict)  # model, tools offered


def read_bodies(reader: AnalyticsReader, project_id: UUID, request_id: str) -> LoggedBodies | None:
    """None when nothing is logged under the id, or none could be: the request log keeps
    ids a body's contract refuses (over 64 characters, as a caller may send them)."""
    try:
        params = RequestBodiesParams(project_id=project_id, request_id=request_id)
    except ValidationError:
        return None
    rows = reader.query("request_bodies", params.model_dump())
    if rows.empty:
        return None
    row = rows.iloc[0]
    return LoggedBodies(
        request_id=str(row["request_id"]), endpoint=str(row["endpoint"]),
        request=str(row["request"]), response=str(row["response"]),
        expires_at=row["expires_at"].to_pydatetime(),
    )  # fmt: skip


def search_bodies(
    reader: AnalyticsReader, project_id: UUID, window: TimeWindow, text: str
) -> pd.DataFrame:
    """At most ``SEARCH_LIMIT`` requests of the project in the window whose logged request
    or answer contains ``text`` (case-insensitive, as typed: no wildcards)."""
    params = RequestSearchParams(project_id=project_id, text=text[:SEARCH_TEXT_CHARS],
                                 limit=SEARCH_LIMIT, **window.params())  # fmt: skip
    return reader.query("project_request_search", params.model_dump())


def conversation(bodies: LoggedBodies) -> Conversation:
    request, answer = _json_object(bodies.request), _json_object(bodies.response)
    system: tuple[Part, ...] = ()
    messages: tuple[Message, ...] = ()
    extras: dict[str, str] = {}
    if request is not None:
        system, messages = _request(request)
        extras = _extras(request)
    answered = () if answer is None else _answer(answer)
    readable_request = request is not None and bool(system or messages)
    return Conversation(
        system=system, messages=messages, answer=answered,
        raw_request=None if readable_request else bodies.request,
        raw_answer=None if answered or not bodies.response else bodies.response,
        extras=extras,
    )  # fmt: skip


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _request(body: dict[str, Any]) -> tuple[tuple[Part, ...], tuple[Message, ...]]:
    system = list(_parts(body.get("system")))  # Anthropic
    messages: list[Message] = []
    for item in body.get("messages") or ():
        if not isinstance(item, dict):
            continue
        message = _message(item)
        if message.role in SYSTEM_ROLES:  # OpenAI
            system += message.parts
        else:
            messages.append(message)
    if not messages and "input" in body:  # embeddings: what was embedded
        messages.append(Message("input", (_text(body["input"]),)))
    return tuple(system), tuple(messages)


def _message(item: dict[str, Any]) -> Message:
    role = str(item.get("role") or "?")
    parts = list(_parts(item.get("content")))
    if role == "tool":  # OpenAI: a tool's result, for the call it names
        parts = [Part("tool_result", p.text, str(item.get("tool_call_id") or "")) for p in parts]
    for call in item.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(Part("tool_call", _pretty(function.get("arguments")),
                              str(function.get("name") or "?")))  # fmt: skip
    return Message(role, tuple(parts))


def _parts(content: Any) -> list[Part]:
    """A message's content: a string, or a list of blocks of either API."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [Part("text", content)]
    if not isinstance(content, list):
        return [_text(content)]
    return [_block(block) for block in content]


def _block(block: Any) -> Part:
    if not isinstance(block, dict):
        return _text(block)
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return Part("text", block["text"])
    if kind == "tool_use":  # Anthropic
        return Part("tool_call", _pretty(block.get("input")), str(block.get("name") or "?"))
    if kind == "tool_result":
        inner = "\n".join(p.text for p in _parts(block.get("content")))
        return Part("tool_result", inner, str(block.get("tool_use_id") or ""))
    if kind in ("image", "image_url", "input_audio", "file", "document"):
        return Part("other", f"[{kind}]")
    return _text(block)


def _answer(body: dict[str, Any]) -> tuple[Message, ...]:
    if isinstance(body.get("choices"), list):  # OpenAI
        return tuple(
            _message(choice["message"])
            for choice in body["choices"]
            if isinstance(choice, dict) and isinstance(choice.get("message"), dict)
        )
    if isinstance(body.get("content"), list):  # Anthropic
        return (Message(str(body.get("role") or "assistant"), tuple(_parts(body["content"]))),)
    if isinstance(body.get("error"), dict):  # either API's error envelope
        error = body["error"]
        return (Message("error", (Part("text", str(error.get("message") or error)),)),)
    if isinstance(body.get("data"), list):  # embeddings: vectors are not for reading
        return (Message("embeddings", (Part("other", f"{len(body['data'])} vector(s)"),)),)
    return ()


def _extras(body: dict[str, Any]) -> dict[str, str]:
    extras = {"model": str(body["model"])} if body.get("model") else {}
    tools = [
        str((tool.get("function") or tool).get("name") or "?")
        for tool in body.get("tools") or ()
        if isinstance(tool, dict)
    ]
    if tools:
        extras["tools offered"] = ", ".join(tools)
    return extras


def _pretty(value: Any) -> str:
    """Tool arguments, indented: OpenAI sends them as a JSON string, Anthropic as JSON."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    return json.dumps(value, indent=2, ensure_ascii=False)


def _text(value: Any) -> Part:
    return Part("text", value) if isinstance(value, str) else Part("other", _pretty(value))

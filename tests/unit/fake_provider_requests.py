"""Request bodies the fake provider's tests send (word counts matter: the token rule)."""

from __future__ import annotations

from typing import Any

SYSTEM: Any = {"role": "system", "content": "You are helpful."}  # 3 words
USER: Any = {"role": "user", "content": "Hello there world"}  # 3 words
CHAT = {"model": "gpt-4o-mini", "messages": [SYSTEM, USER]}
MESSAGES = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "messages": [USER]}


def user(content: Any) -> Any:
    return {"role": "user", "content": content}

"""Reply text and token counts, both deterministic from the request.

Token rule (the ``usage`` the fake reports is the truth gateway tests compare against):

- a word is a whitespace-separated run of characters (``len(text.split())``), counted
  in the raw message text, directives included; only ``{"type": "text"}`` parts of a
  list content count, other parts (images, tool results) count 0 words;
- prompt tokens = words across all message contents + 3 per message; Anthropic's
  top-level ``system``, when present, counts as one more message;
- completion tokens = words in the reply = ``reply_words``, always exactly;
- embeddings: prompt tokens = total_tokens = words across all inputs.

Reply: ``"Echo: "`` + the first 40 characters of the last user message (directives
removed, whitespace collapsed), cut or padded with filler words to exactly
``reply_words`` words. Streams send it one word per content event: the first word
bare, each later one with a leading space, so the pieces join to the full reply.
"""

from __future__ import annotations

from itertools import cycle, islice
from typing import Any

from watchllm_shared.fake_provider.directives import strip_directives

ECHO_CHARS = 40
PER_MESSAGE_TOKENS = 3
_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def prompt_tokens(messages: list[dict[str, Any]], system: Any = None) -> int:
    texts = [content_text(message.get("content")) for message in messages]
    if system is not None:
        texts.append(content_text(system))
    return sum(count_words(text) for text in texts) + PER_MESSAGE_TOKENS * len(texts)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Text of the last ``user`` message (of the last message when no user spoke)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return content_text(messages[-1].get("content")) if messages else ""


def reply_pieces(user_text: str, reply_words: int) -> list[str]:
    """The reply as stream pieces; ``"".join(pieces)`` is the full reply text."""
    echoed = " ".join(strip_directives(user_text).split())[:ECHO_CHARS]
    words = ["Echo:", *echoed.split()][:reply_words]
    words.extend(islice(cycle(_FILLER), reply_words - len(words)))
    return [words[0], *(" " + word for word in words[1:])]

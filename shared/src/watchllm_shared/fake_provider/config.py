"""Settings of the fake provider; every field has a default that suits unit tests.

- ``default_delay_seconds``: sleep before the response headers of every generation or
  embeddings request (a ``[[fake:delay=S]]`` directive replaces it for that request).
- ``chunk_delay_seconds``: sleep between two events of a streamed response.
- ``error_rate``/``error_status``/``seed``: that fraction of generation and embeddings
  requests fail with ``error_status`` in the provider's error shape; the draw comes
  from ``random.Random(seed)``, so a given seed fails the same requests in order.
  ``error_retry_after``: such answers carry ``retry-after`` with this many seconds.
- ``context_window_chars``: a chat request whose last user text is longer gets the
  provider's context-length 400 (OpenAI ``context_length_exceeded``; Anthropic "prompt
  is too long").
- ``reply_words``: every reply has exactly this many words, so ``completion_tokens``
  is known in advance (see ``replies``).
- ``embedding_dims``: length of every embedding vector.
- ``max_recorded_requests``: how many requests ``GET /_fake/requests`` keeps (oldest
  dropped first).
- ``max_body_bytes``: bigger request bodies get a 413.
- ``models``: the ids ``GET /v1/models`` lists.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-20250514",
)


@dataclass(frozen=True, slots=True)
class FakeProviderConfig:
    default_delay_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    seed: int = 0
    error_retry_after: float | None = None
    context_window_chars: int | None = None
    reply_words: int = 24
    embedding_dims: int = 8
    max_recorded_requests: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    models: tuple[str, ...] = DEFAULT_MODELS

    def __post_init__(self) -> None:
        if self.default_delay_seconds < 0 or self.chunk_delay_seconds < 0:
            raise ValueError("delays must be >= 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")
        if not 400 <= self.error_status <= 599:
            raise ValueError("error_status must be a 4xx or 5xx status")
        if self.reply_words < 1 or self.embedding_dims < 1:
            raise ValueError("reply_words and embedding_dims must be >= 1")
        if self.max_recorded_requests < 0 or self.max_body_bytes < 1:
            raise ValueError("max_recorded_requests must be >= 0, max_body_bytes >= 1")

"""What one request asks of the cache, from the project's settings and its headers.

Per-request headers (documented in the README):
- ``Cache-Control: no-cache`` or ``x-watchllm-no-cache: true``: do not answer from the
  cache (the answer may still be stored);
- ``Cache-Control: no-store`` or ``x-watchllm-no-store: true``: do not store the answer;
- ``x-watchllm-cache-ttl: SECONDS``: keep this answer that long (1 s to 30 days), but
  never longer than the project's TTL: the smaller of the two applies, so a caller can
  shorten how long its answer is kept, never lengthen it past what the operator set
  (issue 22, finding 11);
- ``x-watchllm-cache-threshold: 0.0-1.0``: the semantic similarity this request needs
  (it may only raise the bar — the project's, or the cache service's default when the
  project has none, which only the service knows: so it travels as ``min_threshold``
  beside the project's ``threshold``, and the service takes the higher; a request
  cannot make the cache laxer).
A malformed value is a 400 in the caller's shape, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from watchllm_gateway.errors import bad_request
from watchllm_shared.accounts import CacheSettings

_MAX_TTL_SECONDS = 30 * 86_400
_TRUE = {"1", "true", "yes"}


@dataclass(frozen=True, slots=True)
class CachePolicy:
    read: bool
    write: bool
    semantic: bool
    ttl_seconds: int
    threshold: float | None  # the project's bar; None: the cache service's default
    min_threshold: float | None  # the request's header: raises the bar, never lowers it

    @property
    def active(self) -> bool:
        return self.read or self.write


def _flag(headers: Mapping[str, str], name: str, directive: str) -> bool:
    if headers.get(name, "").strip().lower() in _TRUE:
        return True
    directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
    return directive in directives


def cache_policy(settings: CacheSettings, headers: Mapping[str, str]) -> CachePolicy:
    ttl = settings.ttl_seconds
    if "x-watchllm-cache-ttl" in headers:
        raw = headers["x-watchllm-cache-ttl"].strip()
        # isascii: str.isdigit() is also true of "²" and other digits int() refuses.
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_TTL_SECONDS:
            raise bad_request(
                f"x-watchllm-cache-ttl must be whole seconds from 1 to {_MAX_TTL_SECONDS}",
                "invalid_cache_header",
            )
        ttl = min(int(raw), settings.ttl_seconds)  # may shorten the project's, not extend
    asked: float | None = None
    if "x-watchllm-cache-threshold" in headers:
        try:
            asked = float(headers["x-watchllm-cache-threshold"])
        except ValueError:
            asked = -1.0
        if not 0.0 <= asked <= 1.0:
            raise bad_request(
                "x-watchllm-cache-threshold must be a number from 0 to 1", "invalid_cache_header"
            )
    enabled = settings.enabled
    return CachePolicy(
        read=enabled and not _flag(headers, "x-watchllm-no-cache", "no-cache"),
        write=enabled and not _flag(headers, "x-watchllm-no-store", "no-store"),
        semantic=settings.mode == "semantic",
        ttl_seconds=ttl,
        threshold=settings.similarity_threshold,
        min_threshold=asked,
    )

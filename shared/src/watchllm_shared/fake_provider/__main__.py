"""``python -m watchllm_shared.fake_provider [--host H] [--port P] [options]``.

``serve`` is also what the ``watchllm fake-provider`` command calls. One uvicorn
worker with uvloop and httptools, no access log, warnings and errors only; the
one-line error uvicorn logs for each deliberately dropped stream
(``[[fake:stream_fail_after=N]]``) is filtered out.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from watchllm_shared.fake_provider import FakeProviderConfig, create_fake_provider

_DROPPED_STREAM = "ASGI callable returned without completing response."


class _DroppedStreamFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROPPED_STREAM


def serve(host: str, port: int, config: FakeProviderConfig) -> None:
    """Serve the fake provider until interrupted."""
    logging.getLogger("uvicorn.error").addFilter(_DroppedStreamFilter())
    uvicorn.run(
        create_fake_provider(config),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        # Idle connections are kept longer than the gateway's upstream pool keeps them
        # (aiohttp, 30 s), as providers and their proxies do (nginx: 75 s). With
        # uvicorn's 5 s, a pooled connection the fake closed while the gateway reused it
        # broke after the request was sent: a 502 the gateway may not retry (seen once
        # in a loaded CI run of tests/limiter/test_limits_across_replicas.py).
        timeout_keep_alive=75,
    )


def _parse_args(argv: list[str] | None = None) -> tuple[str, int, FakeProviderConfig]:
    parser = argparse.ArgumentParser(prog="python -m watchllm_shared.fake_provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before headers")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between events")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument("--error-retry-after", type=float, default=None,
                        help="seconds, in retry-after on error answers")  # fmt: skip
    parser.add_argument("--context-window-chars", type=int, default=None,
                        help="longer prompts get a context-length 400")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reply-words", type=int, default=24)
    args = parser.parse_args(argv)
    config = FakeProviderConfig(
        default_delay_seconds=args.delay,
        chunk_delay_seconds=args.chunk_delay,
        error_rate=args.error_rate,
        error_status=args.error_status,
        error_retry_after=args.error_retry_after,
        context_window_chars=args.context_window_chars,
        seed=args.seed,
        reply_words=args.reply_words,
    )
    return args.host, args.port, config


if __name__ == "__main__":
    serve(*_parse_args())

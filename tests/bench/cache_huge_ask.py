"""What one ~4 MB semantic question costs a real cache service process, and what it does
to another project's short question asked right behind it (issue 22, finding 9).

Method: an embedded Valkey and the cache service process of this checkout (real model,
qdrant-edge); one short ask to warm up; then a 3.9 MB ask of one project and a short ask
of another, XADDed back to back as a gateway without the length cap would. Prints when
each was answered (and why), and the service's CPU seconds and memory (``procstat``).
Run: ``.venv/bin/python -m tests.bench.cache_huge_ask``. To measure an older commit,
run it from a worktree of it with ``PYTHONPATH`` set to that worktree's sources.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import redis

from tests.bench.procstat import cpu_seconds, memory_mb
from tests.support.processes import free_port, start_cache_service
from watchllm_shared.cli.embedded import EmbeddedRedis
from watchllm_shared.contracts.cache import SEMANTIC_ASK_STREAM, SemanticAnswer, SemanticAsk

HUGE_QUESTION = "why " * 975_000  # 3.9 MB
CHANNEL = "bench:cache-huge-ask:replies"


def _ask(client: redis.Redis, request_id: str, question: str) -> None:
    ask = SemanticAsk(request_id=request_id, reply_to=CHANNEL, project_id=uuid.uuid4(),
                      scope="bench", question=question,
                      deadline_unix_ms=int((time.time() + 120) * 1000))  # fmt: skip
    client.xadd(SEMANTIC_ASK_STREAM, {"data": ask.model_dump_json()})


def _answers(pubsub: redis.client.PubSub, count: int, started: float) -> dict[str, str]:
    """request id -> "after N ms (reason)", for the next ``count`` replies."""
    out: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while len(out) < count:
        assert time.monotonic() < deadline, "the cache service did not answer within 120 s"
        message = pubsub.get_message(timeout=1.0)  # None also for the subscription itself
        if message is None:
            continue
        answer = SemanticAnswer.model_validate_json(message["data"])
        took = (time.perf_counter() - started) * 1000
        out[answer.request_id] = f"after {took:.0f} ms ({answer.reason})"
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cache-huge-ask-"))
    server = EmbeddedRedis(tmp / "redis", port=free_port())
    url = server.start()
    cache = start_cache_service({"REDIS_URL": url, "WATCHLLM_QDRANT_EDGE_PATH": str(tmp / "q")},
                                tmp)  # fmt: skip
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(CHANNEL)
        _ask(client, "warm-up", "hello there")
        _answers(pubsub, 1, time.perf_counter())
        pid = cache.process.pid
        before, cpu = memory_mb(pid), cpu_seconds(pid)
        started = time.perf_counter()
        _ask(client, "huge", HUGE_QUESTION)
        _ask(client, "other project", "How do I reset my password?")
        answers = _answers(pubsub, 2, started)
        after = memory_mb(pid)
        for request_id, what in answers.items():
            print(f"{request_id}: answered {what}")  # noqa: T201 - a command-line report
        print(  # noqa: T201
            f"cache service: {cpu_seconds(pid) - cpu:.2f} CPU s for both; RSS "
            f"{before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MB, peak {after['VmHWM']:.0f} MB"
        )
    finally:
        pubsub.close()
        client.close()
        cache.stop()
        server.stop()


if __name__ == "__main__":
    main()

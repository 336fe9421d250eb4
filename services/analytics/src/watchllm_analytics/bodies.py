"""Storing logged bodies: a consumer group (``analytics-bodies``) on the gateway's
``watchllm.request-bodies.v1`` into ``request_bodies`` (migration 0007).

Apart from the request log's pipeline on purpose: bodies are few (only projects that log
them), large (up to ~64 KiB an entry) and need none of its per-event speed work; a
simple loop reads a page, checks it against the contract, inserts and acknowledges.

- Exactly one row per request: before inserting, the ids the table already holds for
  the page's projects are asked for and skipped (a redelivery, a gateway's re-sent
  pipeline); within a page the first copy wins.
- Expiry: ``expires_at`` is the body's time plus the project's retention, never past
  the request log's (``WATCHLLM_ANALYTICS_RETENTION_DAYS``): a body never outlives its
  request's metadata. The table's TTL drops expired rows at merges; queries never read
  them (``contracts.body_queries``).

Failure modes: an entry that is not a ``RequestBodies`` v1 → the dead-letter stream at
once; ClickHouse down → the page's insert is retried with backoff, nothing
acknowledged, the entries' idle time renewed so no one reclaims them (a SIGTERM
meanwhile leaves them pending for the next start, which reads its own pending first);
an entry delivered more than ``WATCHLLM_ANALYTICS_MAX_DELIVERIES`` times (a consumer
that keeps dying on it) is dead-lettered; a page ClickHouse refuses
(``RowsRejected``) → every entry of it dead-lettered with the error (each is a valid
contract, so this is rare; the DLQ keeps them for a replay); Redis down → back off and
retry. Entries of a consumer that died are taken over after
``WATCHLLM_ANALYTICS_RECLAIM_IDLE_MS``. What the group has acknowledged is trimmed from
the stream every second (``stream_trim``): bodies do not wait in Redis for MAXLEN.
SIGTERM: the round in progress finishes (stored and acked), then the loop ends.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from clickhouse_connect.driver.client import Client
from pydantic import ValidationError
from redis.exceptions import RedisError

from watchllm_analytics.backoff import Backoff
from watchllm_analytics.clickhouse import ClickHouseUnavailable, RowsRejected, call
from watchllm_analytics.dead_letters import DeadLetters, ParkReason
from watchllm_analytics.stream_group import Delivery, GroupConsumer
from watchllm_shared.contracts.request_bodies import RequestBodies
from watchllm_shared.stopping import sleep_unless
from watchllm_shared.stream_trim import keep_trimmed

log = logging.getLogger(__name__)

BODIES_GROUP = "analytics-bodies"
_COLUMNS = ["project_id", "occurred_at", "request_id", "endpoint", "request", "response",
            "expires_at"]  # fmt: skip
_STORED = (
    "SELECT DISTINCT request_id FROM request_bodies"
    " WHERE project_id IN {projects:Array(UUID)} AND request_id IN {ids:Array(String)}"
)
# Entries per read and per insert: 20,000 bodies of 2 KB + 1 KB went in at ~5,500/s
# with pages of 200 and ~18,000/s with 1,000 (one "already stored?" query and one
# insert per page); a page holds at most ~64 MiB (1,000 entries at the gateway's cap).
_PAGE = 1000
_RECLAIM_EVERY_SECONDS = 5.0


class BodyIngest:
    def __init__(
        self, consumer: GroupConsumer, dead_letters: DeadLetters, client: Client,
        max_retention_days: int, max_deliveries: int,
    ) -> None:  # fmt: skip
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._client = client
        self._max_retention = max_retention_days
        self._max_deliveries = max_deliveries
        self.stored = 0  # rows inserted since start
        self.already_stored = 0

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self._consumer
        trimmer = asyncio.create_task(keep_trimmed(consumer.redis, consumer.stream,
                                                   [consumer.group], "request bodies"))  # fmt: skip
        backoff, last_reclaim = Backoff(0.2, 5.0), 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stopping.is_set():
                try:
                    await consumer.ensure_group()
                    page = await consumer.read_own_pending(b"0", _PAGE)  # left by a failure
                    if not page and loop.time() - last_reclaim > _RECLAIM_EVERY_SECONDS:
                        last_reclaim = loop.time()
                        page = (await consumer.reclaim_stale(b"0-0", _PAGE))[1]
                    if not page:
                        new = await consumer.read_new(_PAGE, 500)
                        page = [Delivery(i, f, 1) for i, f in zip(*new, strict=True)]
                    await self._handle(page, stopping)
                    backoff.reset()
                except (RedisError, OSError, ClickHouseUnavailable) as exc:
                    log.warning("request bodies: retrying after %s", exc)
                    await sleep_unless(stopping, backoff.next())
        finally:
            trimmer.cancel()
            await asyncio.gather(trimmer, return_exceptions=True)

    async def _handle(self, page: list[Delivery], stopping: asyncio.Event) -> None:
        rows: list[RequestBodies] = []
        ids: list[bytes] = []
        for entry_id, fields, deliveries in page:
            if fields is None:  # trimmed while pending: nothing left to store
                await self._consumer.ack([entry_id])
            elif deliveries > self._max_deliveries:
                await self._dead_letters.park(entry_id, fields, ParkReason.TOO_MANY_DELIVERIES,
                                              "kept failing", deliveries)  # fmt: skip
            else:
                try:
                    rows.append(RequestBodies.model_validate_json(fields[b"data"]))
                    ids.append(entry_id)
                except (KeyError, ValidationError) as exc:
                    await self._dead_letters.park(entry_id, fields, ParkReason.UNREADABLE,
                                                  str(exc), deliveries)  # fmt: skip
        if not rows:
            return
        try:
            stored = await self._insert_until_stored(rows, ids, stopping)
        except RowsRejected as exc:
            for entry_id, fields, deliveries in page:
                if entry_id in ids and fields is not None:
                    await self._dead_letters.park(entry_id, fields, ParkReason.REJECTED,
                                                  str(exc), deliveries)  # fmt: skip
            return
        if stored:
            await self._consumer.ack(ids)

    async def _insert_until_stored(
        self, rows: list[RequestBodies], ids: list[bytes], stopping: asyncio.Event
    ) -> bool:
        """Insert, retrying while ClickHouse is unavailable (the entries' idle time
        renewed so no one reclaims them, and no delivery counted); False when stopping
        came first: they stay pending for the next start."""
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                await asyncio.to_thread(self._insert, rows)
                return True
            except ClickHouseUnavailable as exc:
                log.warning("request bodies: ClickHouse unavailable, retrying: %s", exc)
            if stopping.is_set():
                return False
            await sleep_unless(stopping, backoff.next())
            await self._consumer.renew(ids)

    def _insert(self, bodies: list[RequestBodies]) -> None:
        """Insert the rows not stored yet (blocking: runs in a worker thread)."""
        projects = sorted({b.project_id for b in bodies})
        asked = {"projects": projects, "ids": sorted({b.request_id for b in bodies})}
        stored = call(lambda: self._client.query(_STORED, parameters=asked))
        seen = {row[0] for row in stored.result_rows}
        rows = []
        for body in bodies:
            if body.request_id in seen:
                self.already_stored += 1
                continue
            seen.add(body.request_id)
            days = min(body.retention_days, self._max_retention)
            expires = body.occurred_at + timedelta(days=days)
            rows.append([body.project_id, body.occurred_at, body.request_id, body.endpoint,
                         body.request, body.response, expires])  # fmt: skip
        if rows:
            call(lambda: self._client.insert("request_bodies", rows, column_names=_COLUMNS))
            self.stored += len(rows)

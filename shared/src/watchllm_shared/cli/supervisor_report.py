"""Publishes the supervisor's report into Redis for ``/health``, from a thread of its own.

The supervisor's loop must never wait on Redis: a paused or restarting Valkey would
otherwise stall the restarts of everything else. So ``publish`` only hands the latest
report over; the thread writes it at once and again every ``_REFRESH_SECONDS`` (the key
expires after ``SUPERVISOR_REPORT_TTL_SECONDS``, so a report outlives ``up`` by at most
that). A failed write is logged once per outage and retried with the next refresh.
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.exceptions import RedisError

from watchllm_shared.contracts.supervision import (
    SUPERVISOR_KEY,
    SUPERVISOR_REPORT_TTL_SECONDS,
    SupervisorReport,
)

log = logging.getLogger(__name__)

_REFRESH_SECONDS = 5.0


class ReportPublisher:
    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(
            redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._latest: SupervisorReport | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="supervisor-report", daemon=True)
        self._thread.start()

    def publish(self, report: SupervisorReport) -> None:
        self._latest = report
        self._wake.set()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        try:
            self._client.delete(SUPERVISOR_KEY)
        except RedisError:
            pass
        self._client.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(_REFRESH_SECONDS)
            self._wake.clear()
            report = self._latest
            if report is None or self._stopping.is_set():
                continue
            try:
                self._client.set(SUPERVISOR_KEY, report.model_dump_json(),
                                 ex=SUPERVISOR_REPORT_TTL_SECONDS)  # fmt: skip
            except RedisError as exc:
                if not self._failing:
                    log.warning("cannot publish the supervisor report (%s: %s); retrying",
                                type(exc).__name__, exc)  # fmt: skip
                self._failing = True
                continue
            self._failing = False

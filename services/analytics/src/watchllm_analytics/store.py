"""Opening the analytics store: database, schema, retention, and the two clients.

One client writes (the pipeline's writer, used from one thread at a time), one reads
(dashboard queries and pings), so a long dashboard query never delays an insert; a third
writes the logged bodies (``bodies``).
Blocking: call from a worker thread.

Failure modes: an unreachable server raises ``ClickHouseUnavailable`` (the service
retries in the background); a chdb path held by another process raises ``StoreLocked``
and a chdb DSN where chdb is not installed (the image: it is the ``embedded`` extra)
raises ``EmbeddedEngineMissing``, before any folder is made; either way the service
refuses to start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from watchllm_analytics.clickhouse import create_database, open_client, require_chdb
from watchllm_analytics.migrations import apply_retention, migrate
from watchllm_analytics.settings import AnalyticsSettings


@dataclass(frozen=True, slots=True)
class AnalyticsStore:
    writer_client: Client
    query_client: Client
    bodies_client: Client  # the logged bodies' writer (``bodies``), its own thread

    def close(self) -> None:
        for client in (self.query_client, self.writer_client, self.bodies_client):
            client.close()


def open_store(settings: AnalyticsSettings) -> AnalyticsStore:
    dsn = settings.clickhouse_dsn()
    if settings.embedded:
        require_chdb(dsn)  # before the folder: the image (no chdb) may not write it at all
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    database = settings.clickhouse_database
    create_database(dsn, database)
    writer_client = open_client(dsn, database)
    try:
        migrate(writer_client)
        apply_retention(writer_client, settings.analytics_retention_days)
        query_timeout = settings.analytics_query_timeout_seconds + 5
        query_client = open_client(dsn, database, timeout_seconds=query_timeout)
        bodies_client = open_client(dsn, database)
    except BaseException:
        with contextlib.suppress(Exception):
            writer_client.close()
        raise
    return AnalyticsStore(writer_client, query_client, bodies_client)

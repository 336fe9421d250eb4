"""The pure parts of `watchllm up --replicas`, `backup` and `restore`: parsing, port
plans, which pg_dump fits, when a restore is refused, where a password goes."""

from __future__ import annotations

import socket
from pathlib import Path

import click
import pytest

from watchllm_shared.cli.pg_backup import ArchiveInfo, DatabaseState, refuse_reason
from watchllm_shared.cli.pg_tools import PgTool, PgToolError, choose, libpq_target
from watchllm_shared.cli.replicas import ReplicaPlan, parse_replicas

pytestmark = pytest.mark.unit

BASE = {"gateway": 8080, "limiter": 8090, "cache": 8091, "analytics": 8092}
METRICS = {"gateway": 9180, "limiter": 9190, "cache": 9191, "analytics": 9192}


def plan(counts: dict[str, int], **urls: str | None) -> ReplicaPlan:
    return ReplicaPlan.build(
        counts, BASE, Path("/data"), clickhouse_url=urls.get("clickhouse_url"),
        qdrant_url=urls.get("qdrant_url"), metrics_ports=METRICS, reserved=[9000],
    )  # fmt: skip


def test_replicas_parse_from_commas_and_repeats_and_bad_input_is_named() -> None:
    assert parse_replicas(["gateway=2,limiter=3", " cache=2 "]) == {
        "gateway": 2, "limiter": 3, "cache": 2,
    }  # fmt: skip
    bad_inputs = [("dashboard=2", "SERVICE one of"), ("gateway", "SERVICE=N"),
                  ("gateway=two", "whole number"), ("cache=0", "between 1 and 16")]  # fmt: skip
    for bad, message in bad_inputs:
        with pytest.raises(click.BadParameter, match=message):
            parse_replicas([bad])


def test_replica_ports_skip_other_services_ports_and_busy_ones() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        base = {**BASE, "gateway": taken - 1}
        chosen = ReplicaPlan.build({"gateway": 3, "limiter": 3}, base, Path("/d"),
                                   clickhouse_url=None, qdrant_url=None,
                                   metrics_ports=METRICS)  # fmt: skip
    gateway_ports = chosen.ports["gateway"]
    assert gateway_ports[0] == taken - 1 and taken not in gateway_ports
    assert chosen.ports["limiter"][:2] == (8090, 8093)  # 8091/8092: cache and analytics
    assert len(set(gateway_ports + chosen.ports["limiter"])) == 6
    # metrics listeners too: 9191/9192 are cache's and analytics'
    assert chosen.metrics_ports["limiter"] == (9190, 9193, 9194)
    assert chosen.metrics_ports["gateway"][:2] == (9180, 9181)
    every = [p for ports in (*chosen.ports.values(), *chosen.metrics_ports.values()) for p in ports]
    assert len(every) == len(set(every))


def test_each_replica_gets_its_port_consumer_name_and_own_qdrant_edge_folder() -> None:
    replicas = plan({"cache": 2, "limiter": 2}).replicas("cache")
    assert [r.name for r in replicas] == ["cache", "cache-2"]
    assert replicas[0].env["WATCHLLM_QDRANT_EDGE_PATH"] == "/data/qdrant-edge"
    assert replicas[1].env["WATCHLLM_QDRANT_EDGE_PATH"] == "/data/qdrant-edge-2"
    assert replicas[1].env["WATCHLLM_CACHE_CONSUMER_NAME"].endswith("-cache-2")
    assert replicas[1].url == f"http://127.0.0.1:{replicas[1].port}"
    assert replicas[1].metrics_url == f"http://127.0.0.1:{replicas[1].metrics_port}/metrics"
    assert replicas[1].env["WATCHLLM_CACHE_METRICS_PORT"] == str(replicas[1].metrics_port)
    single = plan({}).replicas("limiter")
    assert single[0].env == {"WATCHLLM_LIMITER_PORT": "8090",
                             "WATCHLLM_LIMITER_METRICS_PORT": "9190"}  # one replica  # fmt: skip
    shared = plan({"cache": 2}, qdrant_url="http://qdrant:6333").replicas("cache")
    assert all("WATCHLLM_QDRANT_EDGE_PATH" not in r.env for r in shared)
    assert any("own qdrant-edge index" in n for n in plan({"cache": 2}).notes())


def test_analytics_scales_only_on_a_clickhouse_server() -> None:
    with pytest.raises(click.UsageError, match="WATCHLLM_CLICKHOUSE_URL"):
        plan({"analytics": 2})
    with pytest.raises(click.UsageError, match="chdb opens"):
        plan({"analytics": 2}, clickhouse_url="chdb:///data/clickhouse")
    assert plan({"analytics": 2}, clickhouse_url="http://ch:8123").count("analytics") == 2


def tool(major: int) -> PgTool:
    return PgTool(major, f"{major}.1", Path(f"/pg/{major}/bin/pg_dump"))


def test_the_oldest_pg_dump_not_older_than_the_server_is_chosen() -> None:
    found = [tool(18), tool(15), tool(16)]
    assert choose("pg_dump", found, 15, "server 15").major == 15
    assert choose("pg_dump", found, 17, "server 17").major == 18
    with pytest.raises(PgToolError, match=r"pg_dump 19 or newer .* found: pg_dump 18\.1"):
        choose("pg_dump", [tool(18)], 19, "server 19")
    with pytest.raises(PgToolError, match="found: none.*postgresql-client-15"):
        choose("pg_dump", [], 15, "server 15")


def test_a_password_leaves_the_command_line_for_the_environment() -> None:
    url, env = libpq_target("postgresql+asyncpg://app:s%40cret@db:5432/watchllm?sslmode=require")
    assert url == "postgresql://app@db:5432/watchllm?sslmode=require"
    assert env == {"PGPASSWORD": "s@cret"}
    assert libpq_target("postgresql://postgres@127.0.0.1/x") == (
        "postgresql://postgres@127.0.0.1/x",
        {},
    )
    with pytest.raises(PgToolError, match="not a postgresql"):
        libpq_target("mysql://db/x")


def test_a_restore_never_mixes_data_nor_restores_what_this_version_cannot_use() -> None:
    known = ["0001", "0002", "0003"]
    archive = ArchiveInfo(15, ("public.api_keys",), "0002")

    def reason(state: DatabaseState, clean: bool, info: ArchiveInfo = archive) -> str:
        return refuse_reason(state, info, clean, known) or ""

    assert reason(DatabaseState("w", False, 15), clean=False) == ""
    assert reason(DatabaseState("w", True, 15, ()), clean=False) == ""
    full = DatabaseState("w", True, 15, ("public.api_keys", "public.alembic_version"), "0002")
    assert "not empty" in reason(full, clean=False)
    assert reason(full, clean=True) == ""
    newer = DatabaseState("w", True, 15, full.tables, "0003")
    assert "revision 0003 and the backup at 0002" in reason(newer, clean=True)
    assert "newer version took it" in reason(full, True, ArchiveInfo(15, (), "0009"))
    assert "not a WatchLLM backup" in reason(full, True, ArchiveInfo(15, (), None))

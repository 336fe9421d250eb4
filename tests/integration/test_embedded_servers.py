"""The embedded Valkey/PostgreSQL servers and the test suite's server providers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis

from tests.support.servers import (
    DATABASE_URL_ENV,
    POSTGRES_IMAGE,
    REDIS_IMAGE,
    REDIS_URL_ENV,
    docker_images_available,
    fresh_database,
    provide_postgres,
    provide_redis,
)
from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError

pytestmark = pytest.mark.integration


async def _fetchval(url: str, query: str, *args: object) -> object:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


def _alive(pid: int) -> bool:
    """True for a running process (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.mark.slow
async def test_embedded_redis_stream_round_trip(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        assert server.url.startswith(f"redis://:{server.password}@127.0.0.1:")
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.xgroup_create("events", "workers", id="0", mkstream=True)
            sent = await client.xadd("events", {"kind": "request", "n": "1"})
            batch = await client.xreadgroup("workers", "w1", {"events": ">"}, count=10)
            assert batch == [[b"events", [(sent, {b"kind": b"request", b"n": b"1"})]]]
            assert await client.xack("events", "workers", sent) == 1
        finally:
            await client.aclose()
        assert server.log_path.read_text()  # the server logs to data_dir/valkey.log
    server.stop()  # idempotent
    with pytest.raises(EmbeddedServerError):
        _ = server.url


@pytest.mark.slow
def test_embedded_redis_keeps_data_across_restarts(tmp_path: Path) -> None:
    for expected in (None, b"kept"):
        with EmbeddedRedis(tmp_path / "redis") as server:
            client = redis.Redis.from_url(server.url)
            try:
                assert client.get("key") == expected
                client.set("key", "kept")
            finally:
                client.close()


@pytest.mark.slow
def test_one_owner_per_data_dir(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis"):
        with pytest.raises(
            EmbeddedServerError, match=f"in use by another process \\(pid {os.getpid()}"
        ):
            EmbeddedRedis(tmp_path / "redis").start()


@pytest.mark.slow
async def test_embedded_postgres_keeps_data_across_restarts(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    assert url.startswith(f"postgresql://postgres:{server.password}@127.0.0.1:")
    assert url.endswith("/watchllm")
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute(
            "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')"
        )
    finally:
        await connection.close()
    server.stop()
    server.stop()  # idempotent
    assert not (server.pgdata / "postmaster.pid").exists()

    with EmbeddedPostgres(tmp_path / "pg") as again:
        assert await _fetchval(again.url, "SELECT body FROM notes") == "kept"
        assert "database system is ready" in again.log_path.read_text()


_CRASHING_OWNER = """
import asyncio, os, sys
from pathlib import Path
import asyncpg, redis
from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis

data = Path(sys.argv[1])
redis_url = EmbeddedRedis(data / "redis").start()
redis.Redis.from_url(redis_url).set("key", "before crash")

async def write(url):
    connection = await asyncpg.connect(url)
    await connection.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('before crash')")
    await connection.close()

pg = EmbeddedPostgres(data / "pg")
asyncio.run(write(pg.start()))
print((pg.pgdata / "postmaster.pid").read_text().split()[0], flush=True)
os._exit(0)  # no stop(), no atexit: both servers stay running, orphaned
"""


@pytest.mark.slow
async def test_restart_after_the_owner_crashed(tmp_path: Path) -> None:
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(_CRASHING_OWNER), str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(owner.communicate(), timeout=60)
    assert owner.returncode == 0
    orphan = int(stdout)
    assert _alive(orphan)

    with EmbeddedRedis(tmp_path / "redis") as rds, EmbeddedPostgres(tmp_path / "pg") as pg:
        assert not _alive(orphan)
        client = redis.Redis.from_url(rds.url)
        try:
            assert client.get("key") == b"before crash"
        finally:
            client.close()
        assert await _fetchval(pg.url, "SELECT v FROM t") == "before crash"


@pytest.mark.slow
async def test_postgres_restarts_over_a_stale_pid_file(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    await _fetchval(url, "SELECT 1")
    postmaster = _postmaster_pid(server)
    os.kill(postmaster, signal.SIGKILL)  # its backends notice and exit on their own
    server.stop()  # the server is already dead: nothing to stop, the lock is released

    # A stale postmaster.pid whose pid now belongs to a live unrelated process (this
    # one): PostgreSQL alone would refuse to start ("lock file already exists").
    pid_file = server.pgdata / "postmaster.pid"
    lines = pid_file.read_text().split("\n")
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]))
    with EmbeddedPostgres(tmp_path / "pg") as again:
        assert await _fetchval(again.url, "SELECT current_database()") == "watchllm"
        assert _postmaster_pid(again) != os.getpid()


def test_providers_use_the_urls_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, "redis://redis.example:6380/3")
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://u:p@db.example:5433/x")
    with provide_redis(tmp_path) as redis_url, provide_postgres(tmp_path) as database_url:
        assert redis_url == "redis://redis.example:6380/3"
        assert database_url == "postgresql://u:p@db.example:5433/x"
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_docker_check_is_quick_and_never_raises() -> None:
    docker_images_available.cache_clear()
    started = time.monotonic()
    assert docker_images_available(REDIS_IMAGE) in (True, False)
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_provide_redis_without_env_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with provide_redis(tmp_path) as url:
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
        finally:
            client.close()
    if not docker_images_available(REDIS_IMAGE):
        assert (tmp_path / "redis" / "valkey.log").exists()
        assert urlsplit(url).password  # the embedded Valkey wants one (issue 22, finding 4)


@pytest.fixture(scope="module")
def fallback_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
        data = tmp_path_factory.mktemp("fallback")
        with provide_postgres(data) as url:
            if not docker_images_available(POSTGRES_IMAGE):
                assert (data / "postgres" / "pgdata" / "PG_VERSION").exists()
                assert urlsplit(url).password  # TCP needs it (issue 22, finding 4)
            yield url


@pytest.mark.slow
async def test_provide_postgres_without_env_falls_back(fallback_postgres: str) -> None:
    assert await _fetchval(fallback_postgres, "SELECT current_database()") == "watchllm"


@pytest.mark.slow
async def test_fresh_database_creates_and_drops(fallback_postgres: str) -> None:
    with fresh_database(fallback_postgres, "watchllm_test") as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("watchllm_test_") and len(name) == len("watchllm_test_") + 12
        assert await _fetchval(url, "SELECT current_database()") == name
        lingering = await asyncpg.connect(url, timeout=10)  # terminated by the drop
    try:
        exists = "SELECT count(*) FROM pg_database WHERE datname = $1"
        assert await _fetchval(fallback_postgres, exists, name) == 0
    finally:
        lingering.terminate()


def test_fresh_database_rejects_unsafe_prefixes() -> None:
    with pytest.raises(ValueError, match="name_prefix"):
        with fresh_database("postgresql://unused", 'x"; DROP'):
            pass


def _valkey_pid(server: EmbeddedRedis) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


@pytest.mark.slow
def test_valkey_runs_apart_from_its_owners_process_group(tmp_path: Path) -> None:
    """A Ctrl-C to `watchllm up`'s process group must not reach the store: the gateway
    still flushes its last events into it while `up` stops the services."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        pid = _valkey_pid(server)
        assert os.getpgid(pid) != os.getpgid(0)
        assert os.getsid(pid) != os.getsid(0)


@pytest.mark.slow
def test_a_killed_valkey_restarts_on_its_data_at_the_same_url(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        url = server.url
        client = redis.Redis.from_url(url)
        try:
            client.set("key", "kept")
            client.execute_command("BGREWRITEAOF")  # on disk now, not within the fsync second
            deadline = time.monotonic() + 60
            while client.info("persistence")["aof_rewrite_in_progress"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            os.kill(_valkey_pid(server), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while server.alive():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert server.restart() == url
            assert server.alive()
            assert client.get("key") == b"kept"  # the same client reconnects to the same URL
        finally:
            client.close()


@pytest.mark.slow
async def test_a_killed_postgres_restarts_on_its_data_at_the_same_url(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as server:
        url = server.url
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
        finally:
            await connection.close()
        assert server.alive()
        os.kill(_postmaster_pid(server), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while server.alive():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert server.restart() == url
        assert server.alive()
        assert await _fetchval(url, "SELECT v FROM t") == "kept"  # committed survives

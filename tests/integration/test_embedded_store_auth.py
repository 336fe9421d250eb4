"""Issue 22, finding 4: under `watchllm up` any local user could use the embedded stores
(read and overwrite a tenant's cached answer in Valkey, connect to Postgres as its
superuser). A client that has the port but not the password is now refused by both; the
password never shows on a command line; a data folder made before passwords existed is
upgraded at its next start; and Valkey is capped (maxmemory, noeviction) like compose.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from tests.support.processes import free_port
from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _without_password(url: str, password: str = "") -> str:
    """``url`` as a local user without the password (or with ``password``) would try."""
    parts = urlsplit(url)
    user = parts.username or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return urlunsplit(parts._replace(netloc=f"{credentials}{parts.hostname}:{parts.port}"))


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_valkey_refuses_a_client_without_the_password(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:  # as tests/support/servers.py starts it
        owner = redis.Redis.from_url(server.url)
        stranger = redis.Redis.from_url(_without_password(server.url))
        guesser = redis.Redis.from_url(_without_password(server.url, "guessed-password-000"))
        try:
            owner.set("c:{project}:answer", "the tenant's answer")
            for client in (stranger, guesser):
                with pytest.raises(redis.AuthenticationError):
                    client.get("c:{project}:answer")
                with pytest.raises(redis.AuthenticationError):
                    client.set("c:{project}:answer", "poisoned")
            assert owner.get("c:{project}:answer") == b"the tenant's answer"
            pid = int(owner.info("server")["process_id"])
            assert server.password not in _cmdline(pid)
            # What holds the password, and the AOF (every cached answer), is private.
            assert _mode(server.data_dir) == 0o700
            assert _mode(server.data_dir / "valkey.conf") == 0o600
            # Capped like compose and k8s: full, it refuses writes, never evicts a counter.
            assert owner.config_get("maxmemory")["maxmemory"] == str(1024**3)
            assert owner.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        finally:
            for client in (owner, stranger, guesser):
                client.close()


def test_valkey_takes_its_new_password_at_the_next_start(tmp_path: Path) -> None:
    """A folder from before passwords (or a new secret): the next start applies it."""
    port = free_port()
    with EmbeddedRedis(tmp_path / "redis", port, "first-password-000000") as server:
        with redis.Redis.from_url(server.url) as client:
            client.set("key", "kept")
        old_url = server.url
    with EmbeddedRedis(tmp_path / "redis", port, "second-password-00000") as again:
        with redis.Redis.from_url(again.url) as client:
            assert client.get("key") == b"kept"
        with redis.Redis.from_url(old_url) as old:  # the same port, the old password
            with pytest.raises(redis.AuthenticationError):
                old.get("key")


async def _refused(url: str) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        connection = await asyncpg.connect(url, timeout=10)
        await connection.close()


async def _fetchval(url: str, query: str) -> object:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


async def test_postgres_refuses_tcp_without_the_password(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as server:
        assert await _fetchval(server.url, "SELECT rolsuper FROM pg_roles "
                               "WHERE rolname = current_user") is True  # fmt: skip
        await _refused(_without_password(server.url))
        await _refused(_without_password(server.url, "guessed-password-000"))
        postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
        assert server.password not in _cmdline(postmaster)
        assert server.password not in server.log_path.read_text()
        assert _mode(server.log_path) == 0o600


async def test_a_postgres_folder_from_before_passwords_is_upgraded(tmp_path: Path) -> None:
    """What older `watchllm up`s left: TCP trusted, a superuser with no password. The
    next start asks TCP for the password it is given, and only that one."""
    with EmbeddedPostgres(tmp_path / "pg", password="first-password-000000") as server:
        await _fetchval(server.url, "ALTER ROLE postgres PASSWORD NULL")
        hba = server.pgdata / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")

    with EmbeddedPostgres(tmp_path / "pg", password="second-password-00000") as again:
        assert await _fetchval(again.url, "SELECT current_database()") == "watchllm"
        await _refused(_without_password(again.url))
        await _refused(_without_password(again.url, "first-password-000000"))


def test_a_password_unfit_for_a_url_is_refused(tmp_path: Path) -> None:
    for bad in ("short", "has space in it here", "x@y:z/" * 4):
        with pytest.raises(EmbeddedServerError, match="password"):
            EmbeddedRedis(tmp_path / "redis", password=bad)
    assert not (tmp_path / "redis").exists()


def test_both_urls_carry_the_password(tmp_path: Path) -> None:
    with (
        EmbeddedRedis(tmp_path / "redis") as valkey,
        EmbeddedPostgres(tmp_path / "pg") as postgres,
    ):
        for server in (valkey, postgres):
            assert urlsplit(server.url).password == server.password
            assert server.password not in server.redacted_url
        assert asyncio.run(_fetchval(postgres.url, "SELECT 1")) == 1

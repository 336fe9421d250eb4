"""Real Redis and PostgreSQL servers for the test suite.

``provide_redis(tmp_dir)`` and ``provide_postgres(tmp_dir)`` are context managers that
yield a URL, taking the first source that works:

1. the URL in ``WATCHLLM_TEST_REDIS_URL`` / ``WATCHLLM_TEST_DATABASE_URL`` (used as is,
   nothing is started or checked; CI points these at its own servers);
2. a testcontainers container, only when a Docker engine answers within 2 s *and* the
   images (``REDIS_IMAGE`` / ``POSTGRES_IMAGE``, plus testcontainers' Ryuk image unless
   ``TESTCONTAINERS_RYUK_DISABLED``) are already present locally: tests never pull. A
   missing engine or image is not a failure; the next source is tried;
3. the embedded servers of :mod:`watchllm_shared.cli.embedded`, with data under
   ``tmp_dir`` (``tmp_dir/redis``, ``tmp_dir/postgres``).

The Postgres URL names a superuser, so it also serves as ``admin_url`` for
:func:`fresh_database`, which gives a test its own empty database and drops it after.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger(__name__)

REDIS_URL_ENV = "WATCHLLM_TEST_REDIS_URL"
DATABASE_URL_ENV = "WATCHLLM_TEST_DATABASE_URL"
REDIS_IMAGE = "redis:7-alpine"
POSTGRES_IMAGE = "postgres:16-alpine"
DOCKER_TIMEOUT_S = 2
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")

T = TypeVar("T")


def provide_redis(tmp_dir: Path) -> AbstractContextManager[str]:
    """A Redis URL: from the environment, a local container, or an embedded Valkey."""
    if url := os.environ.get(REDIS_URL_ENV):
        return nullcontext(url)
    if docker_images_available(REDIS_IMAGE):
        return _redis_container()
    return _embedded(EmbeddedRedis(tmp_dir / "redis"))


def provide_postgres(tmp_dir: Path) -> AbstractContextManager[str]:
    """A Postgres superuser URL: from the environment, a container, or embedded."""
    if url := os.environ.get(DATABASE_URL_ENV):
        return nullcontext(url)
    if docker_images_available(POSTGRES_IMAGE):
        return _postgres_container()
    return _embedded(EmbeddedPostgres(tmp_dir / "postgres"))


@contextmanager
def fresh_database(admin_url: str, name_prefix: str = "watchllm_test") -> Iterator[str]:
    """Create ``<name_prefix>_<12 hex>``, yield its URL, then drop it (PostgreSQL >= 13).

    Works inside a running event loop too: the asyncpg calls run on their own loop in a
    worker thread. Connections still open at the end are terminated by the drop.
    """
    if not _PREFIX.fullmatch(name_prefix):
        raise ValueError(f"name_prefix must match {_PREFIX.pattern}: {name_prefix!r}")
    name = f"{name_prefix}_{secrets.token_hex(6)}"
    _run_async(functools.partial(_admin, admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield database_url(admin_url, name)
    finally:
        _run_async(functools.partial(_drop_database, admin_url, name))


def database_url(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead (credentials, host, query kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@functools.cache
def docker_images_available(image: str) -> bool:
    """Whether a Docker engine answers and already holds ``image`` (and Ryuk's)."""
    if not _docker_socket_answers():
        return False
    try:
        import docker  # type: ignore[import-untyped]
        from docker.errors import DockerException  # type: ignore[import-untyped]
        from testcontainers.core.config import testcontainers_config as config
    except ImportError:
        return False
    needed = [image] if config.ryuk_disabled else [image, config.ryuk_image]
    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        try:
            for name in needed:
                client.images.get(name)
        finally:
            client.close()
    except (DockerException, OSError) as exc:  # requests' errors are OSErrors
        log.info("not using testcontainers for %s: %s", image, exc)
        return False
    return True


def _docker_socket_answers() -> bool:
    """A connect to the engine's unix socket; other ``DOCKER_HOST`` kinds count as yes.

    It spares docker-py, which leaks its socket (a ResourceWarning, an error under
    ``filterwarnings = error``) when the engine is missing.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(DOCKER_TIMEOUT_S)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


@contextmanager
def _embedded(server: EmbeddedRedis | EmbeddedPostgres) -> Iterator[str]:
    with server:
        yield server.url


@contextmanager
def _redis_container() -> Iterator[str]:
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password="postgres", dbname="watchllm", driver=None
    )
    with container:
        yield container.get_connection_url()


async def _admin(admin_url: str, statement: str, *args: str) -> None:
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


async def _drop_database(admin_url: str, name: str) -> None:
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()"
    )
    await _admin(admin_url, terminate, name)
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread."""

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fresh-db") as pool:
        return pool.submit(asyncio.run, main()).result()

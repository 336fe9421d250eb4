"""Session-wide real servers: Redis and Postgres (see tests/support/servers.py for where
they come from), a migrated database of the session's own, and the fake provider.

Each session gets a temporary root of its own (``--basetemp``, unless given): pytest
resets its shared ``/tmp/pytest-of-<user>`` to mode 0700 whenever a session starts, and
the embedded Postgres runs as another account that needs to pass through it — so a
second pytest started meanwhile made a running session's initdb fail with "Permission
denied". The folder is removed when the session passes and kept for a look when not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from tests.support import scheduling
from tests.support.processes import ServiceProcess, start_fake_provider
from tests.support.servers import fresh_database, provide_postgres, provide_redis
from watchllm_limiter.library import library_source
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts import migrate as migrations

_OWN_BASETEMP = "_watchllm_own_basetemp"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="watchllm-pytest-")
        setattr(config, _OWN_BASETEMP, config.option.basetemp)


@pytest.hookimpl(tryfirst=True)  # before xdist turns the group marks into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scheduling.arrange(config, items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    own = getattr(session.config, _OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with provide_redis(tmp_path_factory.mktemp("redis")) as url:
        yield worker_database(url)


def worker_database(url: str) -> str:
    """Under pytest-xdist (``make test`` runs two workers), worker ``gwN`` gets Redis
    database N + 1 of the given server: the services' stream and group names are fixed
    (``watchllm.cache.asks.v1``…), so two workers on one database would read each
    other's asks and stores — a cache service answering another stack's question "miss".
    Redis Functions are server-wide, but every worker loads the same library."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{int(worker[2:]) + 1}"))


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with provide_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of this test session's own, at the schema's head revision."""
    with fresh_database(postgres_admin_url, "watchllm_test") as url:
        migrations.upgrade(url)
        yield url


@pytest.fixture(scope="session")
async def account_store(database_url: str) -> AsyncIterator[AccountStore]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield AccountStore(pool, actor="tests")
    await pool.close()


@pytest.fixture(scope="session")
def limiter_library(redis_url: str) -> None:
    """The limiter's Functions library in Redis, as a running limiter service leaves it."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.function_load(library_source(), replace=True)
    finally:
        client.close()


@pytest.fixture(scope="session")
def fake_provider(log_dir: Path) -> Iterator[ServiceProcess]:
    service = start_fake_provider(log_dir)
    yield service
    service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def project_key(account_store: AccountStore) -> tuple[str, str]:
    """A fresh project (PRO plan) and one key for it: (project name, key)."""
    name = unique("proj")
    await account_store.create_project(name, Plan.PRO)
    created = await account_store.create_key(name, "tests")
    return name, created.secret

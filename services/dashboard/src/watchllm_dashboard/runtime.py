"""What one dashboard process holds: settings, a Postgres pool, a Redis client, the
analytics reader and an HTTP client, opened once and shared by every browser session.

Streamlit runs each page view on a thread of its own, while the accounts module is
asyncio (asyncpg). The runtime therefore owns one event loop on a background thread;
page code hands it coroutines with :meth:`Runtime.run` and waits for the result. The
asyncpg pool and the Redis client live on that loop only. The coroutine runs in a copy
of the caller's ``contextvars`` context (``run_coroutine_threadsafe`` does that), which
carries the page's trace context: with tracing on, the Postgres and Redis spans are
children of the page's span (see ``tracing``).

Opening fails loudly (Postgres unreachable, bad settings); Streamlit then shows the
error and the next page view tries again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import httpx
import redis.asyncio as aioredis

from watchllm_dashboard.data.analytics import AnalyticsReader, open_reader
from watchllm_dashboard.settings import DashboardSettings
from watchllm_dashboard.tracing import TRACER_NAME, TracedReader
from watchllm_shared.accounts import SessionStore, UserStore
from watchllm_shared.accounts.sign_in_guard import SignInGuard
from watchllm_shared.telemetry import active_tracer

T = TypeVar("T")
log = logging.getLogger(__name__)


class DashboardUnavailable(Exception):
    """A store the dashboard needs did not answer in time."""


class Runtime:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.tracer = active_tracer(TRACER_NAME)  # None unless tracing is on
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dashboard-io", daemon=True
        )
        self._thread.start()
        self._pool: asyncpg.Pool | None = None
        self._redis: aioredis.Redis | None = None
        reader = open_reader(settings)
        self.analytics: AnalyticsReader = (
            reader if self.tracer is None else TracedReader(reader, self.tracer)
        )
        self.http = httpx.Client(timeout=5.0)
        # One per process: every browser session's sign-ins share its per-client counts
        # and its cap on password checks running at once (used on the loop only).
        self.sign_in_guard = SignInGuard()
        # Signs export links (``export_link``): the configured one, else this process's.
        configured = settings.dashboard_export_secret
        self.export_secret = (
            configured.get_secret_value().encode() if configured else secrets.token_bytes(32)
        )
        # "Now" for the pages' time windows; tests pin it to a moment of their choice.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def open(cls, settings: DashboardSettings) -> Runtime:
        runtime = cls(settings)
        try:
            runtime.run(runtime._connect(), timeout=30)
        except BaseException:
            runtime.close()
            raise
        return runtime

    async def _connect(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.settings.database_url, min_size=1, max_size=8, command_timeout=15
        )
        self._redis = aioredis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        await self._bootstrap_admin()

    async def _bootstrap_admin(self) -> None:
        name, password = (
            self.settings.dashboard_admin_username,
            self.settings.dashboard_admin_password,
        )
        if name is None or password is None:
            return
        user = await UserStore(self.pool, actor="bootstrap").bootstrap_admin(
            name, password.get_secret_value()
        )
        if user is not None:
            log.info("bootstrap: created admin %s", user.username)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not open"
        return self._pool

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "runtime not open"
        return self._redis

    @property
    def sessions(self) -> SessionStore:
        return SessionStore(self.pool, self.settings.session_policy, self.sign_in_guard)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        """Run ``coroutine`` on the runtime's loop, in a copy of this thread's context
        (so under the page's span), and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout as exc:
            future.cancel()
            raise DashboardUnavailable(f"no answer within {timeout:.0f} s") from exc

    def close(self) -> None:
        async def _close() -> None:
            if self._pool is not None:
                await self._pool.close()
            if self._redis is not None:
                await self._redis.aclose()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()
        self.analytics.close()
        self.http.close()

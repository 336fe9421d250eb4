"""What a dashboard sign-in may cost before its password is even looked at (issue 22,
finding 6): a throttle per client and a cap on password checks running at once.

Policy, per dashboard process (the state is in memory; k8s pins a client to one pod by
the Service's ClientIP affinity, and with N pods a client gets N times the budget):

- **Per client.** A client (an address: the dashboard's ``auth`` view says how it is
  found, also behind a proxy) may fail ``client_max_failures`` (10) sign-ins within
  ``client_window`` (15 minutes). Past that it is refused at once, with no password
  check and no database work, until its oldest failure leaves the window
  (:class:`SignInThrottledError` says when). An attempt counts as a failure from its
  start until it succeeds, so a burst from one client cannot slip past the count; one
  refused for being busy counts too. A success does not wipe earlier failures.
- **Concurrent checks.** At most ``max_concurrent`` (2) sign-ins run at once; each
  holds its slot from reading the user to settling the outcome, and its scrypt takes
  128 MiB and ~0.6 s of a core. Another attempt is refused at once
  (:class:`SignInBusyError`), so a flood of attempts never waits on, nor takes, the
  Postgres connections signed-in users' pages need.
- At most ``max_clients`` (10,000) addresses are remembered; past that the one idle
  longest is forgotten, so spoofed or many addresses cost bounded memory.

The per-user lock, which also stops guesses spread over many clients, is in
``sessions`` (its threshold is twice what one client may fail in a window, so one
client alone can never lock a user).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from watchllm_shared.accounts.errors import AuthenticationError
from watchllm_shared.accounts.passwords import hash_password, verify_password


class SignInThrottledError(AuthenticationError):
    """This client failed too many sign-ins lately; it may try again later."""


class SignInBusyError(AuthenticationError):
    """Too many sign-ins are being checked at this moment; try again in a few seconds."""


class Attempt:
    """One admitted sign-in: it holds a slot and counts as its client's failure until
    :meth:`succeeded`. The password checks run on a thread (scrypt releases the GIL)."""

    def __init__(self, guard: SignInGuard, client: str, started: float) -> None:
        self._guard = guard
        self._client = client
        self._started = started

    async def verify(self, password: str, stored: str) -> bool:
        return await asyncio.to_thread(self._guard.verify, password, stored)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._guard.hash, password)

    def succeeded(self) -> None:
        self._guard._forget_failure(self._client, self._started)


class SignInGuard:
    """Shared by every sign-in of one process (the dashboard's runtime holds one), and
    used from one event loop. ``clock`` (monotonic seconds), ``verify`` and ``hash`` are
    seams for tests."""

    def __init__(
        self,
        max_concurrent: int = 2,
        client_max_failures: int = 10,
        client_window: timedelta = timedelta(minutes=15),
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        verify: Callable[[str, str], bool] = verify_password,
        hash: Callable[[str], str] = hash_password,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.client_max_failures = client_max_failures
        self.client_window = client_window
        self._max_clients = max_clients
        self._clock = clock
        self.verify = verify
        self.hash = hash
        self._running = 0
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def running(self) -> int:
        """How many sign-ins hold a slot right now."""
        return self._running

    @asynccontextmanager
    async def attempt(self, client: str) -> AsyncIterator[Attempt]:
        """Admit one sign-in from ``client``, or raise at once (throttled or busy)."""
        now = self._clock()
        failures = self._recent_failures(client, now)
        if len(failures) >= self.client_max_failures:
            wait = max(1, math.ceil(failures[0] + self.client_window.total_seconds() - now))
            raise SignInThrottledError(
                f"too many failed sign-ins from your address: try again in {_duration(wait)}"
            )
        failures.append(now)  # a failure until it succeeds
        if self._running >= self.max_concurrent:
            raise SignInBusyError(
                "the dashboard is checking too many sign-ins at once: try again in a few seconds"
            )
        self._running += 1
        try:
            yield Attempt(self, client, now)
        finally:
            self._running -= 1

    def _recent_failures(self, client: str, now: float) -> deque[float]:
        failures = self._failures.pop(client, None) or deque()
        horizon = now - self.client_window.total_seconds()
        while failures and failures[0] <= horizon:
            failures.popleft()
        self._failures[client] = failures  # most recently seen last
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
        return failures

    def _forget_failure(self, client: str, started: float) -> None:
        failures = self._failures.get(client)
        if failures is not None and started in failures:
            failures.remove(started)


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} minutes"

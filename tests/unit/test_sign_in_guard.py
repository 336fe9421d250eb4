"""The sign-in guard's policy with a clock the test turns (no database): a client's
failures leave its count after the window, a success is not a failure, the cap refuses
at once, memory stays bounded; and which address the dashboard counts, behind proxies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from watchllm_dashboard.views.auth import client_address
from watchllm_shared.accounts.sign_in_guard import (
    SignInBusyError,
    SignInGuard,
    SignInThrottledError,
)

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail(guard: SignInGuard, client: str) -> None:
    async with guard.attempt(client):
        pass  # ends without succeeded(): a failure


async def test_a_clients_failures_leave_its_count_after_the_window() -> None:
    clock = Clock()
    guard = SignInGuard(client_max_failures=3, client_window=timedelta(minutes=15), clock=clock)
    for _ in range(3):
        await fail(guard, "192.0.2.1")
        clock.now += 60
    with pytest.raises(SignInThrottledError, match="try again in 12 minutes"):
        await fail(guard, "192.0.2.1")
    await fail(guard, "192.0.2.2")  # another client is not affected
    clock.now += 12 * 60  # the first failure leaves the window: one more try
    await fail(guard, "192.0.2.1")
    with pytest.raises(SignInThrottledError, match="try again in 60 s"):
        await fail(guard, "192.0.2.1")


async def test_a_success_does_not_count_nor_wipe_earlier_failures() -> None:
    guard = SignInGuard(client_max_failures=2, clock=Clock())
    await fail(guard, "192.0.2.1")
    for _ in range(5):
        async with guard.attempt("192.0.2.1") as attempt:
            attempt.succeeded()
    await fail(guard, "192.0.2.1")
    with pytest.raises(SignInThrottledError):
        await fail(guard, "192.0.2.1")


async def test_beyond_the_cap_an_attempt_is_refused_at_once_and_counted() -> None:
    guard = SignInGuard(max_concurrent=1, client_max_failures=2, clock=Clock())
    async with guard.attempt("192.0.2.1"):
        assert guard.running == 1
        with pytest.raises(SignInBusyError):
            await fail(guard, "192.0.2.2")
    assert guard.running == 0
    await fail(guard, "192.0.2.2")
    with pytest.raises(SignInThrottledError):  # the busy refusal counted as a failure
        await fail(guard, "192.0.2.2")


async def test_it_remembers_at_most_max_clients() -> None:
    guard = SignInGuard(client_max_failures=1, max_clients=2, clock=Clock())
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        await fail(guard, client)
    await fail(guard, "192.0.2.1")  # forgotten, the one idle longest
    with pytest.raises(SignInThrottledError):
        await fail(guard, "192.0.2.3")


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "counted"),
    [
        ("203.0.113.5", ["10.0.0.1"], 0, "203.0.113.5"),  # no proxy: headers are ignored
        (None, [], 0, "local"),  # loopback
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], 1, "198.51.100.7"),  # left entry: a claim
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7, 10.0.0.9"], 2, "198.51.100.7"),
        ("10.0.0.2", [], 1, "10.0.0.2"),  # bypassed the proxy
    ],
)
def test_the_address_counted_is_the_one_the_outermost_trusted_proxy_saw(
    peer: str | None, forwarded: list[str], hops: int, counted: str
) -> None:
    assert client_address(peer, forwarded, hops) == counted

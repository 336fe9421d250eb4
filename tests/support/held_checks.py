"""Password checks a test can hold in progress: a ``SignInGuard``'s ``verify`` seam.

A sign-in given ``HeldChecks`` records the hash it checks, then waits until the test
sets ``release``: while it waits, the test looks at what the sign-in holds (row locks,
connections) and what the others get. ``wait_for`` waits for that state, never sleeps a
guessed time; its deadline, like the hold's, only bounds a failure.
"""

from __future__ import annotations

import asyncio
import threading
import time

from watchllm_shared.accounts.passwords import verify_password

WAIT_LIMIT_S = 30.0


class HeldChecks:
    def __init__(self) -> None:
        self.release = threading.Event()
        self._checked: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self._checked.append(stored)
        self.release.wait(WAIT_LIMIT_S)
        return verify_password(password, stored)

    @property
    def checked(self) -> list[str]:
        """The stored hashes checked (or being checked) so far, in order."""
        with self._lock:
            return list(self._checked)

    async def wait_for(self, count: int) -> None:
        """Return once ``count`` checks have begun."""
        deadline = time.monotonic() + WAIT_LIMIT_S
        while len(self.checked) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.checked)} of {count} password checks began")
            await asyncio.sleep(0.005)

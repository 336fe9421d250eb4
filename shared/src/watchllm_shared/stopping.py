"""Stopping a service's background loops in bounded time, their finished work acknowledged.

Why not just ``task.cancel()`` and wait: in Python 3.11, ``asyncio.wait_for`` loses a
cancellation that arrives just as the operation it waits on completes (CPython
gh-86296; 3.12 rebuilt ``wait_for`` on ``asyncio.timeout``), and redis-py sends every
command through ``wait_for`` when its client has a socket timeout (every service's
client but the gateway's hot path). A stream consumer with a backlog sends one command
after another, so a cancellation lands there often: it vanishes, the loop reads on, and
the lifespan awaiting the task hangs in uvicorn's "Waiting for application shutdown"
until the supervisor kills the process, acknowledgements unsent. (SIGTERM of a limiter
with a backlog hung in 5 of 10 runs; a task dump showed the charger task "cancelling"
yet still reading, the cancellation lost in redis-py's ``send_packed_command``.) A
cancellation also lands anywhere: between a batch's writes and its XACK, which leaves
done work to be redone by another consumer later.

So:
- a loop that holds work (read, handle, acknowledge) takes a ``stopping`` event and
  looks at it between rounds, so it ends with everything it read handled and
  acknowledged; its waits end early when the event is set (``sleep_unless``);
- ``stop_tasks`` waits for such loops up to a grace period, then cancels whatever is
  left, again every ``RECANCEL_SECONDS`` until it ends (one cancellation may be lost, as
  above). Loops with nothing to finish (heartbeats, syncs) are stopped with a grace of 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_SECONDS = 0.1
CANCEL_PATIENCE_SECONDS = 2.0  # then give up on a task and let the shutdown go on


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or until ``stopping`` is set if that comes first."""
    if stopping.is_set():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()


async def stop_tasks(tasks: Collection[asyncio.Task[Any]], grace_seconds: float) -> None:
    """Wait up to ``grace_seconds`` for ``tasks`` to end by themselves (their loops saw
    their stop event), then cancel the rest until they end. A task cut short is logged;
    one that ignores cancellation for ``CANCEL_PATIENCE_SECONDS`` is logged and left."""
    pending = {task for task in tasks if not task.done()}
    if pending and grace_seconds > 0:
        _, pending = await asyncio.wait(pending, timeout=grace_seconds)
        for task in pending:
            log.warning("%s did not finish within %.1f s; cancelling it", task.get_name(),
                        grace_seconds)  # fmt: skip
    waited = 0.0
    while pending and waited < CANCEL_PATIENCE_SECONDS:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
        waited += RECANCEL_SECONDS
    for task in pending:
        log.error("%s ignored cancellation for %.1f s; shutting down without it",
                  task.get_name(), CANCEL_PATIENCE_SECONDS)  # fmt: skip
    for task in tasks:  # retrieve outcomes, so none is reported as never retrieved
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s failed: %r", task.get_name(), error, exc_info=error)

"""Serving a service's app under uvicorn: ``python -m watchllm_<service>`` calls ``serve``.

For the services only (each depends on uvicorn; the shared package does not).

``serve`` is ``uvicorn.run`` with exit codes a supervisor can read. uvicorn (0.29 on)
re-raises the signal that stopped it once it has shut down, so under the default
handlers a service ended "killed by SIGTERM" (-15) whether its shutdown completed or
was cut short. Here that re-raised signal is caught, and the process exits:

- 0 after a stop by SIGTERM or SIGINT whose shutdown completed (the lifespan's, with
  its flushes and acknowledgements);
- 1 when a second Ctrl-C forced the exit, skipping the lifespan's shutdown;
- 3 (uvicorn's code) when start-up failed; 0 if a stop signal came before uvicorn ran.

With ``metrics``, the service's Prometheus metrics are served on a listener of their
own on the same host (``metrics_listener``), started before uvicorn (a taken port is a
start-up failure, 3) and closed after it.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any, NoReturn

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from watchllm_shared.metrics_listener import (
    MetricsEndpoint,
    MetricsListener,
    MetricsPortInUse,
    start_metrics_listener,
)

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(BaseException):
    """A stop signal outside uvicorn's own handlers (re-raised by it, or before it ran)."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def refuse_start(reason: str) -> NoReturn:
    """Stop a service before it serves, for a reason its operator must fix (a missing
    secret): one log line, exit 3 as for any start-up failure."""
    log.error("%s", reason)
    sys.exit(STARTUP_FAILURE)


def serve(
    app: Any, *, host: str, port: int, metrics: MetricsEndpoint | None = None, **options: Any
) -> None:
    """Run ``app`` until SIGTERM/SIGINT; exit as the module says. ``options`` go to
    ``uvicorn.Config``."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    listener: MetricsListener | None = None
    if metrics is not None:
        try:
            listener = start_metrics_listener(metrics, host)
        except MetricsPortInUse as exc:
            refuse_start(str(exc.strerror))
    # Installed before uvicorn runs: it restores them after its shutdown and re-raises.
    previous = {sig: signal.signal(sig, _stopped) for sig in _STOP_SIGNALS}
    stopped = False
    try:
        server.run()
    except _Stopped:
        stopped = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if listener is not None:
            listener.close()
    if not server.started:
        sys.exit(0 if stopped else STARTUP_FAILURE)
    if server.force_exit:
        sys.exit(1)

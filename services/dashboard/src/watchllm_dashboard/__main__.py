"""``python -m watchllm_dashboard``: check the settings, then serve the dashboard headless.

What is served is ``server.app``: the Streamlit app and its export route, on
Streamlit's Starlette server (uvicorn) in this process, on ``WATCHLLM_DASHBOARD_HOST``:
``WATCHLLM_DASHBOARD_PORT`` (3000); it answers ``GET /_stcore/health`` once ready.

Exit codes a supervisor can read: uvicorn re-raises the signal that stopped it once it
has shut down (so under default handlers the process would end "killed by SIGTERM");
handlers installed before it runs catch that, and a stop by SIGTERM or SIGINT exits 0
(as ``watchllm_shared.serving`` does for the other services).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

from watchllm_dashboard.settings import DashboardSettings

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stopped(BaseException):
    """A stop signal, re-raised by uvicorn after its shutdown (or before it ran)."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def streamlit_options(settings: DashboardSettings) -> dict[str, Any]:
    return {
        "server.headless": True,
        "server.address": settings.dashboard_host,
        "server.port": settings.dashboard_port,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "global.developmentMode": False,
        "client.toolbarMode": "minimal",
        "client.showErrorDetails": "type",
        "theme.base": "light",
    }


def main() -> None:
    settings = DashboardSettings()  # invalid settings fail here, before Streamlit starts
    from watchllm_dashboard.server import app  # Streamlit's modules, once settings hold

    previous = {sig: signal.signal(sig, _stopped) for sig in _STOP_SIGNALS}
    try:
        app.run(config=streamlit_options(settings))
    except _Stopped:
        sys.exit(0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()

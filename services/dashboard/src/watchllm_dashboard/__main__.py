"""``python -m watchllm_dashboard``: check the settings, then run Streamlit headless.

Streamlit replaces this process (exec), so signals reach it directly; it serves the
app on ``WATCHLLM_DASHBOARD_HOST``:``WATCHLLM_DASHBOARD_PORT`` (3000) and answers
``GET /_stcore/health`` once ready.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from watchllm_dashboard.settings import DashboardSettings


def streamlit_command(settings: DashboardSettings) -> list[str]:
    script = Path(__file__).with_name("app.py")
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless=true",
        f"--server.address={settings.dashboard_host}",
        f"--server.port={settings.dashboard_port}",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",
        "--client.showErrorDetails=type",
        "--theme.base=light",
    ]


def main() -> None:
    settings = DashboardSettings()  # invalid settings fail here, before Streamlit starts
    command = streamlit_command(settings)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()

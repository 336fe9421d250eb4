"""What ``watchllm up``'s supervisor reports about the processes it runs, read by the
gateway's ``GET /health`` (``"processes"``).

``up`` writes one JSON document under ``SUPERVISOR_KEY`` whenever a process changes state
and every few seconds, with a TTL: when ``up`` itself is gone the report expires and
``/health`` stops showing it. Deployments without ``up`` (compose, Kubernetes) have no
report; their orchestrator's restart counts are the equivalent.

Add-only, like every contract: new fields get defaults, readers ignore unknown ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

SUPERVISOR_KEY = "watchllm:supervisor"
SUPERVISOR_REPORT_TTL_SECONDS = 15

# running: up and supervised; restarting: exited, waiting its backoff before the next
# start; given_up: exited too often (see RestartPolicy), left down until `up` restarts.
ProcessState = Literal["running", "restarting", "given_up"]


class ProcessStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    state: ProcessState
    restarts: int = 0
    last_exit: int | None = None  # exit code; negative: killed by that signal
    last_exit_at: datetime | None = None
    log: str = ""


class SupervisorReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    at: datetime
    processes: dict[str, ProcessStatus]

    @property
    def given_up(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.state == "given_up"]

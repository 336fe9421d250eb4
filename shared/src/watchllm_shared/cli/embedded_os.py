"""Operating-system plumbing for the embedded servers: the data folder's ownership lock,
finding (via ``/proc``) and stopping server processes an owner left behind, signals, and
reading log tails. Linux-first: without ``/proc`` the leftover checks find nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("watchllm_shared.cli.embedded")

PROC = Path("/proc")
SHUTDOWN_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 30


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why."""


class DirLock:
    """An exclusive, non-blocking ``flock`` on a file that records the owner's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path = self.path.parent.resolve() / self.path.name
        handle = self.path.open("a+", encoding="ascii")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise EmbeddedServerError(
                f"{self.path.parent} is in use by another process (pid {owner})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


def server_processes(executable: str, workdir: Path) -> list[int]:
    """Live processes running ``executable`` with ``workdir`` as working directory."""
    if not PROC.is_dir():
        return []
    return [
        int(p.name) for p in PROC.iterdir() if p.name.isdigit() and _runs(p, executable, workdir)
    ]


def _runs(proc_entry: Path, executable: str, workdir: Path) -> bool:
    try:  # zombies and other users' processes raise here and do not count
        exe = Path(os.readlink(proc_entry / "exe")).name
        return exe.startswith(executable) and Path(os.readlink(proc_entry / "cwd")) == workdir
    except OSError:
        return False


def stop_leftovers(executable: str, workdir: Path) -> None:
    """SIGTERM servers an earlier owner of ``workdir`` left running, then wait."""
    for pid in server_processes(executable, workdir):
        log.warning("stopping %s (pid %d) left running in %s", executable, pid, workdir)
        send_signal(pid, signal.SIGTERM)
    wait_until_gone(executable, workdir)


def wait_until_gone(executable: str, workdir: Path) -> None:
    """Wait for those processes to exit; SIGKILL them after 30 s, give up 30 s later."""
    if _exited(executable, workdir):
        return
    pids = server_processes(executable, workdir)
    log.warning("killing %s %s, still running in %s", executable, pids, workdir)
    for pid in pids:
        send_signal(pid, signal.SIGKILL)
    if not _exited(executable, workdir):
        raise EmbeddedServerError(f"{executable} processes {pids} survive in {workdir}")


def _exited(executable: str, workdir: Path) -> bool:
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    while server_processes(executable, workdir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_running(pid: int) -> bool:
    """``pid`` is a live process (a zombie counts as gone; without ``/proc``, any pid)."""
    if not PROC.is_dir():
        return pid_exists(pid)
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def send_signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def client_env() -> dict[str, str]:
    """This environment without PG* variables, which would redirect the bundled tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def read_first_int(path: Path) -> int | None:
    try:
        first = path.read_text(encoding="ascii", errors="replace").split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: Path, offset: int) -> str:
    """The last lines ``path`` gained after ``offset`` (where a start began)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def text_of(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""

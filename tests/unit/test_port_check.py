"""`watchllm up`'s free-port check agrees with the servers it starts: connections a
stopped stack left in TIME_WAIT do not make a port busy (it refused to start for ~60 s
after every stop under load), a listening socket does."""

from __future__ import annotations

import socket
import subprocess

import pytest

from watchllm_shared.cli.replicas import is_port_free

pytestmark = pytest.mark.unit


def _time_wait_on(port: int) -> bool:
    listing = subprocess.run(["ss", "-Htan", "state", "time-wait", f"sport = :{port}"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    return bool(listing.strip())


def test_a_port_with_time_wait_connections_is_free_and_a_listening_one_is_not() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not is_port_free(port)  # something listens: busy
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server side closes first: its end waits in TIME_WAIT
        client.recv(1)
        client.close()
    assert _time_wait_on(port)
    assert is_port_free(port)  # as uvicorn would bind it (SO_REUSEADDR)

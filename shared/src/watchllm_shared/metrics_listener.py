"""Prometheus metrics on a listener of their own, apart from each service's API port.

Why apart: the gateway's API port faces every caller and analytics' answers the query
API, while ``/metrics`` is for the monitoring system. On a port of its own a
NetworkPolicy (or a firewall) can let Prometheus scrape the metrics and reach nothing
else, and a published API port never shows them (README, Security).

The listener is prometheus_client's threaded WSGI server: a daemon thread accepts, and
each scrape is answered on a thread of its own. Generating the page therefore does not
hold the service's event loop for the whole scrape, only for the interpreter's switch
interval at a time. ``GET /metrics`` answers the registry's text; any other path 404.

Failure mode: a port already in use fails the start (``MetricsPortInUse``, naming the
variable to change); ``watchllm_shared.serving.serve`` reports it and exits 3, as for
the API port.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

PATH = "/metrics"

_StartResponse = Callable[..., Any]


class MetricsPortInUse(OSError):
    """The metrics port is taken; ``str()`` names the variable that sets it."""


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where a service serves its metrics: ``variable`` is the setting of ``port``."""

    registry: CollectorRegistry
    port: int
    variable: str


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a scrape is not news
        pass


class _Server(ThreadingWSGIServer):
    """prometheus_client's threading server, for IPv4 or IPv6 hosts."""


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class MetricsListener:
    """A running listener; ``close()`` stops it (the process's exit does too)."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="metrics-listener", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_listener(endpoint: MetricsEndpoint, host: str) -> MetricsListener:
    """Serve ``endpoint.registry`` at ``http://host:port/metrics`` from now on."""
    metrics = make_wsgi_app(endpoint.registry)

    def app(environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"metrics are served at {PATH}\n".encode()]
        body: Iterable[bytes] = metrics(environ, start_response)
        return body

    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(host, endpoint.port, app, server_class, handler_class=_Quiet)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise MetricsPortInUse(
            exc.errno,
            f"cannot serve metrics on {host}:{endpoint.port}: the port is in use; set"
            f" {endpoint.variable} to a free port",
        ) from exc
    return MetricsListener(server)

"""``watchllm up --replicas gateway=2,limiter=2,cache=2``: several processes of a service
on one machine.

What a replica gets (``ReplicaPlan.replicas``):

- its own port: the first replica keeps the service's port (``WATCHLLM_<SERVICE>_PORT``);
  replica *i* takes the next port above replica *i-1* that no other service is
  configured to use and that is free now. Gateway replicas are independent entry
  points (nothing balances between them on one machine): ``up`` prints every URL;
- its own metrics port, chosen the same way from ``WATCHLLM_<SERVICE>_METRICS_PORT``
  (every service serves ``/metrics`` on a listener apart from its API port);
- its own consumer name (``<host>-<service>-<i>``), stable across restarts so a
  restarted replica takes its own pending entries back at once, in the *same*
  consumer group as its siblings: Redis hands each stream entry to one of them;
- the cache service without ``QDRANT_URL``: qdrant-edge opens a path in one process
  only, so replica *i* gets ``qdrant-edge-<i>`` (the first keeps ``qdrant-edge``).
  Each replica then indexes the questions it stored: exact hits are shared (Redis),
  a semantic hit is found only when the ask reaches the replica that indexed the
  question. Never a wrong answer, fewer semantic hits; ``up`` says so. With
  ``QDRANT_URL`` every replica shares one index.

Refused: analytics with more than one replica on embedded ClickHouse (chdb opens a
path in one process only, and that process must also answer the dashboard's
queries); set ``WATCHLLM_CLICKHOUSE_URL=http://…:8123`` to scale it. A service not in
``SCALABLE`` (the fake provider) or a count outside 1..``MAX_REPLICAS`` is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from watchllm_shared.cli.settings import CliSettings

SCALABLE = ("gateway", "limiter", "cache", "analytics")
MAX_REPLICAS = 16
_HOST = "127.0.0.1"


def parse_replicas(values: Iterable[str]) -> dict[str, int]:
    """``["gateway=2,limiter=2", "cache=3"]`` → ``{"gateway": 2, "limiter": 2, "cache": 3}``."""
    counts: dict[str, int] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            service, sep, number = item.partition("=")
            service = service.strip()
            if not sep or service not in SCALABLE:
                raise click.BadParameter(
                    f"{item!r}: expected SERVICE=N with SERVICE one of {', '.join(SCALABLE)}"
                )
            try:
                count = int(number)
            except ValueError:
                raise click.BadParameter(f"{item!r}: N must be a whole number") from None
            if not 1 <= count <= MAX_REPLICAS:
                raise click.BadParameter(f"{item!r}: N must be between 1 and {MAX_REPLICAS}")
            counts[service] = count
    return counts


def plan_for(settings: CliSettings, counts: Mapping[str, int]) -> ReplicaPlan:
    """The plan for ``up``: every ``*_port`` setting is reserved for its own service, and
    each service's first port must be free now (a clear error beats a crash at bind)."""
    ports = {
        name.removesuffix("_port"): value
        for name, value in settings.model_dump().items()
        if name.endswith("_port") and isinstance(value, int)
    }
    plan = ReplicaPlan.build(
        counts, {service: ports[service] for service in SCALABLE}, settings.data_dir,
        clickhouse_url=settings.clickhouse_url, qdrant_url=settings.qdrant_url,
        reserved=ports.values(),
        metrics_ports={service: ports[f"{service}_metrics"] for service in SCALABLE},
    )  # fmt: skip
    first = {(service, "PORT"): plan.ports[service][0] for service in SCALABLE}
    first |= {(service, "METRICS_PORT"): plan.metrics_ports[service][0] for service in SCALABLE}
    busy = [f"{port} ({service}, WATCHLLM_{service.upper()}_{variable})"
            for (service, variable), port in first.items() if not is_port_free(port)]  # fmt: skip
    if busy:
        raise click.ClickException(
            f"port in use: {'; '.join(busy)}. Stop what listens there (another `watchllm "
            "up`? see README, Troubleshooting) or choose another port."
        )
    return plan


def is_port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. ``SO_REUSEADDR`` as the servers
    (uvicorn, Streamlit) set it: connections of a stopped ``up`` still in TIME_WAIT do
    not make the port busy (without it, ``up`` refused to start for ~60 s after a stop
    under load)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_HOST, port))
        except OSError:
            return False
    return True


def _choose(first: int, count: int, taken: set[int]) -> tuple[int, ...]:
    """``first``, then for each further replica the next port above the last that is
    neither ``taken`` (which it joins) nor busy now."""
    chosen = [first]
    for _ in range(count - 1):
        port = chosen[-1] + 1
        while port in taken or not is_port_free(port):
            port += 1
        chosen.append(port)
        taken.add(port)
    return tuple(chosen)


@dataclass(frozen=True)
class Replica:
    service: str
    index: int  # 1-based
    port: int
    metrics_port: int
    env: dict[str, str]

    @property
    def name(self) -> str:
        """``gateway`` for the first replica (its log stays ``logs/gateway.log``), then
        ``gateway-2``, …"""
        return self.service if self.index == 1 else f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_HOST}:{self.metrics_port}/metrics"


@dataclass(frozen=True)
class ReplicaPlan:
    counts: Mapping[str, int]
    ports: Mapping[str, tuple[int, ...]]
    metrics_ports: Mapping[str, tuple[int, ...]]
    data_dir: Path
    shared_qdrant: bool
    host: str

    @classmethod
    def build(
        cls,
        counts: Mapping[str, int],
        base_ports: Mapping[str, int],
        data_dir: Path,
        *,
        clickhouse_url: str | None,
        qdrant_url: str | None,
        metrics_ports: Mapping[str, int],
        reserved: Iterable[int] = (),
    ) -> ReplicaPlan:
        """Check the counts and choose every replica's ports (see the module docstring)."""
        if counts.get("analytics", 1) > 1 and not (clickhouse_url or "").startswith("http"):
            raise click.UsageError(
                "analytics can run only one replica on embedded ClickHouse (chdb opens "
                "its folder in one process only, and that process also answers the "
                "dashboard's queries). Set WATCHLLM_CLICKHOUSE_URL=http://HOST:8123 to a "
                "ClickHouse server to run several, or drop analytics from --replicas."
            )
        taken = {*base_ports.values(), *metrics_ports.values(), *reserved}
        ports = {s: _choose(base_ports[s], counts.get(s, 1), taken) for s in SCALABLE}
        metrics = {s: _choose(metrics_ports[s], counts.get(s, 1), taken) for s in SCALABLE}
        return cls(dict(counts), ports, metrics, data_dir, bool(qdrant_url),
                   socket.gethostname())  # fmt: skip

    def count(self, service: str) -> int:
        return self.counts.get(service, 1)

    def replicas(self, service: str) -> list[Replica]:
        return [self._replica(service, i) for i in range(1, self.count(service) + 1)]

    def _replica(self, service: str, index: int) -> Replica:
        port, metrics_port = self.ports[service][index - 1], self.metrics_ports[service][index - 1]
        env = {f"WATCHLLM_{service.upper()}_PORT": str(port),
               f"WATCHLLM_{service.upper()}_METRICS_PORT": str(metrics_port)}  # fmt: skip
        if self.count(service) > 1 and service != "gateway":
            env[f"WATCHLLM_{service.upper()}_CONSUMER_NAME"] = f"{self.host}-{service}-{index}"
        if service == "cache" and not self.shared_qdrant:
            folder = "qdrant-edge" if index == 1 else f"qdrant-edge-{index}"
            env["WATCHLLM_QDRANT_EDGE_PATH"] = str(self.data_dir / folder)
        return Replica(service, index, port, metrics_port, env)

    def notes(self) -> list[str]:
        """What an operator should know about this plan, printed by ``up``."""
        notes = [
            f"{service + ':':<10} {self.count(service)} replicas at "
            + ", ".join(replica.url for replica in self.replicas(service))
            + " (metrics at "
            + ", ".join(replica.metrics_url for replica in self.replicas(service))
            + ")"
            for service in SCALABLE
            if self.count(service) > 1
        ]
        if self.count("cache") > 1 and not self.shared_qdrant:
            notes.append(
                f"cache:     {self.count('cache')} replicas, each with its own qdrant-edge "
                "index (exact hits shared; a semantic hit needs the replica that indexed "
                "the question). Set QDRANT_URL for one shared index."
            )
        if self.count("gateway") > 1:
            notes.append(
                "gateways:  independent entry points (no load balancer on one machine); "
                "limits, keys and cache are shared by all of them."
            )
        return notes

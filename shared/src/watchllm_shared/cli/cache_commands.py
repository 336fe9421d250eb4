"""``watchllm cache …``: per-project settings, flushes, deletions, and the evaluation.

Flushes and deletions are sent to the cache service (the only writer of the cache's
stores) as commands on a Redis stream; it applies them within a second while running,
or when it next starts. ``eval`` runs the cache service's own evaluation, in its
package, so its numbers come from the production code path.
"""

from __future__ import annotations

import subprocess
import sys

import click
import redis

from watchllm_shared.accounts import AccountStore
from watchllm_shared.cli.accounts_commands import run_with_store
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.contracts.cache import CACHE_COMMAND_STREAM, CacheCommand


def _send(settings: CliSettings, command: CacheCommand) -> None:
    client = redis.Redis.from_url(settings.effective_redis_url(), socket_timeout=5)
    try:
        client.xadd(CACHE_COMMAND_STREAM, {"data": command.model_dump_json()})
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    finally:
        client.close()


@click.group()
def cache() -> None:
    """Cache settings, flushes, deletions and evaluation."""


@cache.command("flush")
@click.option("--project", required=True, help="Project whose cached answers to drop.")
@click.pass_obj
def flush(settings: CliSettings, project: str) -> None:
    """Drop every cached answer of a project (exact entries and semantic index)."""

    async def project_id(store: AccountStore) -> str:
        return str((await store.get_project(project)).id)

    pid = run_with_store(settings, project_id)
    _send(settings, CacheCommand(op="flush_project", project_id=pid))  # type: ignore[arg-type]
    click.echo(f"flush of project {project} sent to the cache service")


@cache.command("delete")
@click.argument("cache_key")
@click.pass_obj
def delete(settings: CliSettings, cache_key: str) -> None:
    """Drop one cached answer by its key (the x-watchllm-cache-key response header)."""
    if not cache_key.startswith("watchllm:cache:exact:"):
        raise click.BadParameter("a cache key starts with 'watchllm:cache:exact:'")
    _send(settings, CacheCommand(op="delete", exact_key=cache_key))
    click.echo("deletion sent to the cache service")


@cache.command("settings")
@click.argument("project")
@click.option("--enable/--disable", default=None, help="Turn the project's cache on or off.")
@click.option("--mode", type=click.Choice(["exact", "semantic"]), default=None)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Cosine similarity a semantic hit needs (then verification applies).",
)
@click.option("--ttl", type=click.IntRange(min=1), default=None, help="Seconds answers stay.")
@click.pass_obj
def cache_settings(settings: CliSettings, project: str, enable: bool | None, mode: str | None,
                   threshold: float | None, ttl: int | None) -> None:  # fmt: skip
    """Show or change PROJECT's cache settings (gateways apply them within a second)."""
    result = run_with_store(
        settings, lambda s: s.set_cache_settings(project, enable, mode, threshold, ttl)
    )
    click.echo(f"{project}: enabled={result.enabled} mode={result.mode} "
               f"threshold={result.similarity_threshold} ttl={result.ttl_seconds}s")  # fmt: skip


@cache.command("eval", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def evaluate(args: tuple[str, ...]) -> None:
    """Evaluate the semantic cache on PAIRS.jsonl: `watchllm cache eval PAIRS.jsonl [--json]`.

    Runs the cache service's own code path (embedding, index, scope, verification)
    in its package; needs no running server.
    """
    command = [sys.executable, "-m", "watchllm_cache", "eval", *args]
    raise SystemExit(subprocess.call(command))

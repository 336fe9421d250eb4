"""``watchllm cache …``: per-project settings, flushes, deletions, and the evaluation.

Flushes and deletions are sent to the cache service (the only writer of the cache's
stores) as commands on a Redis stream, through ``watchllm_shared.cache_admin`` (the
dashboard's path too, audited); the service applies them within a second while
running, or when it next starts. ``eval`` runs the cache service's own evaluation, in its
package, so its numbers come from the production code path.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from watchllm_shared.accounts import AccountStore
from watchllm_shared.cache_admin import request_delete, request_flush
from watchllm_shared.cli.accounts_commands import run_with_store
from watchllm_shared.cli.settings import CliSettings

T = TypeVar("T")


def _with_redis(settings: CliSettings, action: Callable[[AccountStore, aioredis.Redis],
                                                      Awaitable[T]]) -> T:  # fmt: skip
    """Run ``action`` with the accounts store and a Redis client; Redis errors become CLI errors."""

    async def run(store: AccountStore) -> T:
        client = aioredis.Redis.from_url(settings.effective_redis_url(), socket_timeout=5)
        try:
            return await action(store, client)
        except RedisError as exc:
            raise click.ClickException(f"cannot reach Redis: {exc}") from exc
        finally:
            await client.aclose()

    return run_with_store(settings, run)


@click.group()
def cache() -> None:
    """Cache settings, flushes, deletions and evaluation."""


@cache.command("flush")
@click.option("--project", required=True, help="Project whose cached answers to drop.")
@click.pass_obj
def flush(settings: CliSettings, project: str) -> None:
    """Drop every cached answer of a project (exact entries and semantic index)."""
    _with_redis(settings, lambda store, client: request_flush(store, client, project))
    click.echo(f"flush of project {project} sent to the cache service")


@cache.command("delete")
@click.argument("cache_key")
@click.pass_obj
def delete(settings: CliSettings, cache_key: str) -> None:
    """Drop one cached answer by its key (the x-watchllm-cache-key response header)."""
    _with_redis(settings, lambda store, client: request_delete(store, client, cache_key))
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

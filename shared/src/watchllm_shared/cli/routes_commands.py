"""``watchllm routes``: the gateway's routes file."""

from __future__ import annotations

import subprocess
import sys

import click


@click.group()
def routes() -> None:
    """The gateway's routes file (WATCHLLM_ROUTES_FILE): models, deployments, fallbacks."""


@routes.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check_routes(file: str) -> None:
    """Validate FILE as the gateway does at start: print its models and deployments, or
    every problem, naming the entry and field (exit 1).

    Runs the gateway package's own validation (``watchllm_gateway.routing``)."""
    command = [sys.executable, "-m", "watchllm_gateway.routing", "check", file]
    raise SystemExit(subprocess.call(command))

"""``watchllm backup`` and ``watchllm restore``: the Postgres database (projects, hashed
keys, limits, settings, users, audit log), optionally with the embedded stores' folders.

The rules each step follows live where they are enforced: ``pg_tools`` (which
pg_dump/pg_restore fits the server), ``pg_backup`` (atomic archive, no mixing on
restore, one transaction, migrate to head), ``data_backup`` (folders copied only under
their engines' own locks). Progress goes to stderr, the result to stdout.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from watchllm_shared.cli import pg_backup
from watchllm_shared.cli.data_backup import (
    DataDirError,
    backup_data_dir,
    data_archive_path,
    restore_data_dir,
)
from watchllm_shared.cli.pg_tools import PgToolError, choose, installed_tools
from watchllm_shared.cli.settings import CliSettings

_PG_BIN_DIR = click.option(
    "--pg-bin-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Use pg_dump/pg_restore from this folder only (default: look in the usual places).",
)


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Archive to write (default: watchllm-<database>-<UTC time>.dump here).",
)
@_PG_BIN_DIR
@click.option(
    "--include-data-dir",
    is_flag=True,
    help="Also copy the embedded stores' folders (chdb, qdrant-edge, Valkey) into "
    "<archive>.data.tar.gz; refused while a service has one open.",
)
@click.pass_obj
def backup(
    settings: CliSettings, output: Path | None, pg_bin_dir: Path | None, include_data_dir: bool
) -> None:
    """Back up the Postgres database to a pg_dump custom-format archive."""
    url = settings.effective_database_url()
    try:
        state = asyncio.run(pg_backup.inspect_database(url))
        if not state.exists:
            raise click.ClickException(f"database {state.name} does not exist")
        tool = choose("pg_dump", installed_tools("pg_dump", pg_bin_dir), state.server_major,
                      f"the server runs PostgreSQL {state.server_major}")  # fmt: skip
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        output = output or Path(f"watchllm-{state.name}-{stamp}.dump")
        if output.exists():
            raise click.ClickException(f"{output} exists; a backup never overwrites a file")
        if include_data_dir:
            folders = backup_data_dir(settings.data_dir, data_archive_path(output))
            click.echo(f"embedded data: {data_archive_path(output)} "
                       f"({', '.join(f.name for f in folders)})")  # fmt: skip
        _progress(f"backing up database {state.name} (PostgreSQL {state.server_major}, "
                  f"{len(state.tables)} tables, {_size(state.size_bytes)}, schema revision "
                  f"{state.revision}) with {tool.describe()}")  # fmt: skip
        started = time.monotonic()
        try:
            size = pg_backup.dump(url, output, tool, len(state.tables), _progress)
        except BaseException:
            data_archive_path(output).unlink(missing_ok=True)
            raise
    except (PgToolError, DataDirError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backup written: {output} ({_size(size)}, {time.monotonic() - started:.1f} s); "
               f"restore with `watchllm restore {output}`")  # fmt: skip


@click.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--clean",
    "--force",
    "clean",
    is_flag=True,
    help="Restore into a database that holds data: replace the objects the backup "
    "holds, in one transaction (same schema revision only).",
)
@_PG_BIN_DIR
@click.option(
    "--include-data-dir",
    is_flag=True,
    help="Also unpack <archive>.data.tar.gz into the data folder (services stopped; "
    "with --clean, folders already there are renamed, not deleted).",
)
@click.pass_obj
def restore(
    settings: CliSettings, archive: Path, clean: bool, pg_bin_dir: Path | None,
    include_data_dir: bool,
) -> None:  # fmt: skip
    """Restore a `watchllm backup` archive, then migrate the schema to this version's head.

    A missing database is created; a database holding tables is refused unless --clean.
    """
    from watchllm_shared.accounts import migrate as migrations

    url = settings.effective_database_url()
    try:
        pg_backup.check_archive(archive)
        state = asyncio.run(pg_backup.inspect_database(url))
        tools = installed_tools("pg_restore", pg_bin_dir)
        if not tools:
            raise PgToolError("no pg_restore found; install the PostgreSQL client tools "
                              "or pass --pg-bin-dir DIR")  # fmt: skip
        info = pg_backup.read_archive(archive, max(tools))  # the newest reads every format
        needed = max(state.server_major, info.dumped_by_major)
        tool = choose("pg_restore", tools, needed, f"the server runs PostgreSQL "
                      f"{state.server_major}, the archive was written by pg_dump "
                      f"{info.dumped_by_major}")  # fmt: skip
        if reason := pg_backup.refuse_reason(state, info, clean, migrations.revisions()):
            raise click.ClickException(reason)
        if include_data_dir:
            names = restore_data_dir(data_archive_path(archive), settings.data_dir, clean)
            click.echo(f"embedded data restored into {settings.data_dir}: {', '.join(names)}")
        if not state.exists:
            asyncio.run(pg_backup.create_database(url))
            _progress(f"created database {state.name}")
        _progress(f"restoring {archive} (schema revision {info.revision}, {len(info.tables)} "
                  f"tables) into database {state.name} with {tool.describe()}")  # fmt: skip
        started = time.monotonic()
        try:
            pg_backup.restore(
                url, archive, tool, len(info.tables), clean, _progress, state.server_major
            )
        except PgToolError:
            if not state.exists:
                asyncio.run(pg_backup.drop_database(url))
                _progress(f"dropped database {state.name} again (created for this restore)")
            raise
        applied = migrations.upgrade(url)
    except (PgToolError, DataDirError, migrations.MigrationError) as exc:
        raise click.ClickException(str(exc)) from exc
    upgraded = f", upgraded from {info.revision} ({', '.join(applied)})" if applied else ""
    click.echo(f"restored {archive} into database {state.name} in "
               f"{time.monotonic() - started:.1f} s; schema at revision "
               f"{migrations.head_revision()}{upgraded}")  # fmt: skip
    click.echo("running limiters load the restored limits at their next full sync "
               "(WATCHLLM_LIMITER_FULL_SYNC_SECONDS, 30 s by default)")  # fmt: skip

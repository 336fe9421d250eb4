"""Postgres backup and restore for ``watchllm backup`` / ``watchllm restore``.

A backup is a standard pg_dump custom-format archive (``pg_dump -Fc``): ``pg_restore``
reads it without WatchLLM, and it holds the whole database (projects, hashed keys,
limits, settings, audit log, and ``alembic_version``, the schema revision).

Safety rules, enforced here:

- A backup is written to ``<file>.partial`` and renamed only when pg_dump succeeded, so
  a file with the final name is always complete. It is created readable by its owner
  only (it holds key hashes and the audit log).
- A restore never mixes data: into a missing database it creates the database first;
  into an empty one it restores; into one holding tables it refuses unless ``clean``,
  which drops and recreates the objects the backup contains. ``clean`` is refused
  when the database is at another schema revision than the backup (objects of the
  other revision would survive the clean and break the upgrade): restore into an empty
  database instead.
- pg_restore runs in one transaction (``--single-transaction``, stopping at the first
  error): a failed restore changes nothing (a database created for it is dropped
  again). When pg_restore is newer than the server (an archive of the embedded
  PostgreSQL 18 going to a PostgreSQL 15, say), it writes a script instead, which psql
  runs in one transaction without the settings the older server does not know.
- Objects are restored without their owner and grants (``--no-owner
  --no-privileges``): the restoring user owns them, so a backup of the embedded server
  restores into a managed Postgres and back.
- Afterwards the schema is migrated to this WatchLLM's head revision, so an older backup
  comes back usable; a backup from a newer WatchLLM (an unknown revision) is reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from watchllm_shared.cli.pg_tools import (
    PgTool,
    PgToolError,
    database_name,
    libpq_target,
)

ARCHIVE_MAGIC = b"PGDMP"
_DUMPING = re.compile(r'dumping contents of table "([^"]+)"')
_RESTORING = re.compile(r'processing data for table "([^"]+)"')
_DUMPED_BY = re.compile(r"Dumped by pg_dump version: (\d+)")
_SCRIPT_DATA = re.compile(r"^-- Data for Name: ([^;]+); Type: TABLE DATA; Schema: ([^;]+);")
# What a newer pg_restore writes that an older server refuses (PostgreSQL 17 added it).
_NEWER_SETTINGS = frozenset({"SET transaction_timeout = 0;"})
_USER_TABLES = """
    SELECT n.nspname || '.' || c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 1
"""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DatabaseState:
    name: str
    exists: bool
    server_major: int
    tables: tuple[str, ...] = ()
    revision: str | None = None
    size_bytes: int = 0


@dataclass(frozen=True)
class ArchiveInfo:
    dumped_by_major: int
    tables: tuple[str, ...]  # the tables whose data the archive holds
    revision: str | None


def maintenance_url(database_url: str, database: str = "postgres") -> str:
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{database}"))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _connect(url: str) -> asyncpg.Connection:
    """A connection; a missing database raises ``InvalidCatalogNameError`` as is."""
    try:
        return await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        raise
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise PgToolError(f"cannot connect to Postgres: {exc}") from exc


async def _connect_maintenance(database_url: str) -> asyncpg.Connection:
    try:
        return await _connect(maintenance_url(database_url))
    except asyncpg.InvalidCatalogNameError:
        return await _connect(maintenance_url(database_url, "template1"))


async def inspect_database(database_url: str) -> DatabaseState:
    """What the target database holds (or that it does not exist) and the server's version."""
    name = database_name(database_url)
    try:
        connection = await _connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        connection = await _connect_maintenance(database_url)
        try:
            return DatabaseState(name, False, connection.get_server_version().major)
        finally:
            await connection.close()
    try:
        tables = tuple(row[0] for row in await connection.fetch(_USER_TABLES))
        revision = None
        if "public.alembic_version" in tables:
            revision = await connection.fetchval("SELECT version_num FROM alembic_version")
        size = await connection.fetchval("SELECT pg_database_size(current_database())")
        major = connection.get_server_version().major
        return DatabaseState(name, True, major, tables, revision, int(size))
    finally:
        await connection.close()


async def create_database(database_url: str) -> None:
    connection = await _connect_maintenance(database_url)
    try:
        await connection.execute(f"CREATE DATABASE {quote_ident(database_name(database_url))}")
    finally:
        await connection.close()


async def drop_database(database_url: str) -> None:
    connection = await _connect_maintenance(database_url)
    try:
        await connection.execute(
            f"DROP DATABASE IF EXISTS {quote_ident(database_name(database_url))}"
        )
    finally:
        await connection.close()


def run_tool(command: list[str], env: dict[str, str], on_line: Progress) -> None:
    """Run a pg tool, feeding each stderr line to ``on_line``; raise with the tail on error."""
    tail: deque[str] = deque(maxlen=15)
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    ) as process:  # fmt: skip
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.rstrip("\n")
            tail.append(line)
            on_line(line)
    if process.returncode != 0:
        errors = [line for line in tail if "error" in line.lower()] or list(tail)
        raise PgToolError(f"{Path(command[0]).name} failed:\n" + "\n".join(errors))


def _progress(pattern: re.Pattern[str], total: int, report: Progress) -> Progress:
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if match := pattern.search(line):
            done += 1
            report(f"  [{done}/{total}] {match.group(1)}")

    return on_line


def dump(database_url: str, output: Path, tool: PgTool, tables: int, report: Progress) -> int:
    """Write the archive to ``output`` (atomically, mode 0600); returns its size in bytes."""
    url, env = libpq_target(database_url)
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    command = [str(tool.path), "--format=custom", "--verbose", f"--file={partial}",
               f"--dbname={url}"]  # fmt: skip
    try:
        run_tool(command, env, _progress(_DUMPING, tables, report))
        partial.chmod(0o600)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output.stat().st_size


def check_archive(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(ARCHIVE_MAGIC))
    except OSError as exc:
        raise PgToolError(f"cannot read {path}: {exc}") from exc
    if magic != ARCHIVE_MAGIC:
        raise PgToolError(
            f"{path} is not a pg_dump custom-format archive (made by `watchllm backup` "
            "or `pg_dump -Fc`)"
        )


def read_archive(path: Path, reader: PgTool) -> ArchiveInfo:
    """The archive's table of contents and schema revision, read with ``reader``."""
    check_archive(path)
    listing = _capture([str(reader.path), "--list", str(path)])
    dumped_by = _DUMPED_BY.search(listing)
    if dumped_by is None:
        raise PgToolError(f"{path}: no 'Dumped by pg_dump version' in its table of contents")
    tables = tuple(
        f"{parts[-3]}.{parts[-2]}"
        for line in listing.splitlines()
        if " TABLE DATA " in line and not line.startswith(";")
        for parts in [line.split()]
    )
    revision = None
    if "public.alembic_version" in tables:
        data = _capture([str(reader.path), "--data-only", "--table=alembic_version",
                         "--file=-", str(path)])  # fmt: skip
        rows = data.split("FROM stdin;\n", 1)[-1].split("\n\\.", 1)[0].split()
        revision = rows[0] if rows else None
    return ArchiveInfo(int(dumped_by.group(1)), tables, revision)


def _capture(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise PgToolError(f"{Path(command[0]).name} failed: {done.stderr.strip()}")
    return done.stdout


def restore(
    database_url: str, archive: Path, tool: PgTool, tables: int, clean: bool, report: Progress,
    server_major: int,
) -> None:  # fmt: skip
    """pg_restore into the database in one transaction (``clean``: replace its objects)."""
    url, env = libpq_target(database_url)
    options = ["--no-owner", "--no-privileges"] + (["--clean", "--if-exists"] if clean else [])
    on_line = _progress(_RESTORING, tables, report)
    if tool.major > server_major:
        _restore_as_script(url, env, archive, tool, options, on_line)
        return
    command = [str(tool.path), "--verbose", "--single-transaction", "--exit-on-error",
               *options, f"--dbname={url}", str(archive)]  # fmt: skip
    run_tool(command, env, on_line)


def _restore_as_script(
    url: str, env: dict[str, str], archive: Path, tool: PgTool, options: list[str],
    on_line: Progress,
) -> None:  # fmt: skip
    """A pg_restore newer than the server (an archive from a newer server, or a newer
    pg_dump): its SQL script, minus the settings the server does not know, run by psql
    in one transaction. (pg_restore connected directly sends them and fails.)"""
    psql = tool.path.with_name("psql")
    if not psql.is_file():
        raise PgToolError(f"{psql} is missing; it is needed beside {tool.path}")
    full_env = {**os.environ, **env}
    with tempfile.TemporaryFile("w+") as producer_err, tempfile.TemporaryFile("w+") as psql_err:
        producer = subprocess.Popen(
            [str(tool.path), *options, "--file=-", str(archive)], stdout=subprocess.PIPE,
            stderr=producer_err, text=True, env=full_env,
        )  # fmt: skip
        consumer = subprocess.Popen(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
             "--file=-", f"--dbname={url}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_err, text=True,
            env=full_env,
        )  # fmt: skip
        with producer, consumer:  # closes the pipes, waits for both
            assert producer.stdout is not None and consumer.stdin is not None
            try:
                for line in producer.stdout:
                    if line.rstrip("\n") in _NEWER_SETTINGS:
                        continue
                    if match := _SCRIPT_DATA.match(line):
                        on_line(f'processing data for table "{match.group(2)}.{match.group(1)}"')
                    consumer.stdin.write(line)
                consumer.stdin.close()
            except BrokenPipeError:  # psql stopped at an error; its stderr says which
                producer.kill()
                with contextlib.suppress(BrokenPipeError):
                    consumer.stdin.close()
        # psql first: when it stops at an error, pg_restore is killed and says nothing.
        for name, process, errors in (("psql", consumer, psql_err),
                                      ("pg_restore", producer, producer_err)):  # fmt: skip
            if process.returncode != 0:
                errors.seek(0)
                raise PgToolError(f"{name} failed:\n{errors.read().strip()}")


def refuse_reason(
    state: DatabaseState, archive: ArchiveInfo, clean: bool, known_revisions: list[str]
) -> str | None:
    """Why restoring ``archive`` into ``state`` would be unsafe, or None."""
    if archive.revision is None:
        return "the archive holds no alembic_version table: it is not a WatchLLM backup"
    if archive.revision not in known_revisions:
        return (
            f"the backup is at schema revision {archive.revision}, which this WatchLLM does "
            "not know (a newer version took it): restore it with that version"
        )
    if not state.exists or not state.tables:
        return None
    shown = ", ".join(state.tables[:5]) + (" …" if len(state.tables) > 5 else "")
    if not clean:
        return (
            f"database {state.name} is not empty ({len(state.tables)} tables: {shown}); "
            "restoring would mix the backup with what is there. Pass --clean to replace "
            "the objects the backup holds (in one transaction), or restore into an empty "
            "or missing database (restore creates it)."
        )
    if state.revision != archive.revision:
        return (
            f"database {state.name} is at schema revision {state.revision} and the backup "
            f"at {archive.revision}: --clean replaces only the backup's own objects, so the "
            "other revision's would remain. Drop the database (restore creates it) or "
            "restore into a new one."
        )
    return None

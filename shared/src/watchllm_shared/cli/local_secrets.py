"""Secrets ``watchllm up`` generates once and keeps in the data folder.

Each is a file ``<data dir>/secrets/<name>`` (the folder mode 0700, the file 0600, so
only the account running ``up`` reads it), written once with 32 random bytes
(``secrets.token_urlsafe``: 43 characters) and read back on every later start. So a
restart keeps what depends on it: the exact cache's keys stay the same (entries stored
before the restart still hit), the dashboard and ``watchllm check`` keep the analytics
token, the embedded stores keep their passwords. An operator's own value (the
environment variable, e.g. in a ``.env`` loaded by the shell) wins and nothing is
written. The stores' passwords have no variable of their own: an operator who brings a
store gives its URL (``REDIS_URL``, ``DATABASE_URL``), credentials included, and then
none is generated.

Failure modes: a secret file that other users may read (a copy, a restore with other
permissions) is refused, naming the file and the fix, rather than used; two ``up``
starting at once on one folder write it once (``O_EXCL``): the loser reads the winner's.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

FOLDER = "secrets"


@dataclass(frozen=True)
class LocalSecret:
    name: str  # the file's name under <data dir>/secrets/
    variable: str  # the environment variable the services read it from
    purpose: str  # what it protects, for messages


ANALYTICS_QUERY_TOKEN = LocalSecret(
    "analytics-query-token",
    "WATCHLLM_ANALYTICS_QUERY_TOKEN",
    "the bearer token of analytics' read-query API (analytics, dashboard, watchllm check)",
)
CACHE_KEY_SECRET = LocalSecret(
    "cache-key-secret",
    "WATCHLLM_CACHE_KEY_SECRET",
    "the exact cache's key secret (every gateway); a new one turns cached answers into misses",
)
# Each embedded store is started with its password (cli/embedded.py), and every URL
# `up` hands out carries it.
VALKEY_PASSWORD = LocalSecret(
    "valkey-password",
    "REDIS_URL",
    "the embedded Valkey's password (in every REDIS_URL up hands out)",
)
POSTGRES_PASSWORD = LocalSecret(
    "postgres-password",
    "DATABASE_URL",
    "the embedded Postgres superuser's password (in every DATABASE_URL up hands out)",
)


class SecretFileError(Exception):
    """A secret file exists but must not be used; ``str()`` says why and what to do."""


def secret_path(data_dir: Path, secret: LocalSecret) -> Path:
    return data_dir / FOLDER / secret.name


def read_secret(data_dir: Path, secret: LocalSecret) -> str | None:
    """The secret ``up`` keeps for ``data_dir``, or None when it has none (yet)."""
    path = secret_path(data_dir, secret)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretFileError(
                f"{path} ({secret.purpose}) may be read by other users (mode"
                f" {stat.filemode(mode)}): `chmod 600 {path}` if only you could read it so"
                f" far, else delete it and `watchllm up` makes a new one"
            )
        value = file.read().strip()
    if not value:
        raise SecretFileError(f"{path} is empty: delete it and `watchllm up` makes a new one")
    return value


def load_or_create(data_dir: Path, secret: LocalSecret) -> str:
    """The secret kept for ``data_dir``, created (random, mode 0600) on first use."""
    found = read_secret(data_dir, secret)
    if found is not None:
        return found
    folder = data_dir / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(secret_path(data_dir, secret),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)  # fmt: skip
    except FileExistsError:  # another `up` on this folder wrote it first
        return load_or_create(data_dir, secret)
    with os.fdopen(fd, "w") as file:
        file.write(value + "\n")
    return value


def resolve(data_dir: Path, secret: LocalSecret, given: SecretStr | None) -> dict[str, str]:
    """``{variable: value}`` for a service's environment: the operator's value when
    ``given``, else the one kept for ``data_dir`` (created on first use)."""
    value = given.get_secret_value() if given is not None else load_or_create(data_dir, secret)
    return {secret.variable: value}

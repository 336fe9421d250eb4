"""Who may use the embedded stores: a password on every TCP connection, and a Unix socket
that only the server's own account reaches (issue 22, finding 4).

Both servers listen on 127.0.0.1, which every local user reaches, so TCP alone is no
boundary: Valkey runs with ``requirepass`` and Postgres's ``pg_hba.conf`` asks every TCP
connection for the superuser's password (``scram-sha-256``). Postgres also opens a Unix
socket in a private folder (``mkdtemp``: mode 0700, owned by the server's account, the
socket itself 0700) that ``trust`` lets in: that is how each start sets the password
without knowing the previous one. So a data folder made before passwords existed (its
``pg_hba.conf`` trusted TCP, its superuser had none) is upgraded at its next start, and a
new password (a lost secret file) simply replaces the old one. Only the server's account
and root reach that socket, and they could read the data files anyway.

The password is sent as a SCRAM verifier (what ``psql``'s ``\\password`` sends), so the
clear text never reaches the server, its log or its catalogue; it is never on a command
line (``ps`` shows those to every user): psql reads the statement on stdin and Valkey
reads its password from a 0600 config file.

Passwords are URL-safe (``[A-Za-z0-9_.~-]``, 16+ characters, what ``local_secrets``
generates): they go into URLs and config lines as they are; anything else is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path

from watchllm_shared.cli.embedded_os import EmbeddedServerError

SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
_PASSWORD = re.compile(r"[A-Za-z0-9_.~-]{16,}")

PG_HBA = """\
# Written by watchllm (cli/embedded_auth.py) at every start: edits here are lost.
# TCP (127.0.0.1, reachable by every local user) needs the superuser's password.
# The Unix socket lives in a private folder (0700, the server's account) and is trusted:
# each start sets the password through it.
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
"""


def new_password() -> str:
    return secrets.token_urlsafe(32)


def checked_password(password: str) -> str:
    """``password`` when it may go into a URL and a config line as it is."""
    if not _PASSWORD.fullmatch(password):
        raise EmbeddedServerError(
            "an embedded store's password must be 16+ characters of A-Z a-z 0-9 _ . ~ -"
            " (delete the secret file under <data dir>/secrets/ and `watchllm up` makes one)"
        )
    return password


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The ``SCRAM-SHA-256$…`` string Postgres stores for ``password`` (RFC 7677; an
    ASCII password is its own SASLprep)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def set_password_sql(role: str, password: str) -> str:
    return f"ALTER ROLE {role} PASSWORD '{scram_verifier(password)}';\n"


def private_socket_dir(uid: int | None, gid: int | None) -> Path:
    """A new folder for Postgres's socket: 0700, owned by the server's account.

    Under the system's temp folder, not the data folder: a socket path is limited to 107
    bytes, which a deep data folder would exceed."""
    folder = Path(tempfile.mkdtemp(prefix="watchllm-pg-"))
    if uid is not None:
        os.chown(folder, uid, -1 if gid is None else gid)
    return folder

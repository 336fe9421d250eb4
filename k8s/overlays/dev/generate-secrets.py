#!/usr/bin/env python3
"""Write the dev overlay's Secret values to k8s/overlays/dev/secrets.env (issue 22).

The dev overlay's Secret ``watchllm-secrets`` is made by kustomize's ``secretGenerator``
from that file, which is never committed (.gitignore): every dev cluster gets its own
random store passwords, query token, cache key secret and dashboard admin password.
Run by ``make k8s-dev-secrets`` (or ``python3 k8s/overlays/dev/generate-secrets.py``)
before ``kubectl apply -k k8s/overlays/dev``.

An existing file keeps its values: the stores' volumes keep the passwords they were
created with, and a provider key written into it stays. Keys added by a later version
(e.g. ``dashboard-export-secret``) are appended to it with fresh values, so an older file
still has every key the manifests name. Delete the file (and the dev namespace's
volumes) to start over. Standard library only: no venv needed.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parent / "secrets.env"


def generate() -> dict[str, str]:
    """Every key of k8s/base/secret.example.yaml plus the dev stores' own passwords."""
    postgres, redis = secrets.token_hex(16), secrets.token_hex(16)
    clickhouse, clickhouse_dashboard = secrets.token_hex(16), secrets.token_hex(16)
    return {
        # The data stores' own passwords (datastores.yaml).
        "postgres-password": postgres,
        "redis-password": redis,
        "clickhouse-password": clickhouse,
        "clickhouse-dashboard-password": clickhouse_dashboard,
        # The services' URLs, carrying those passwords.
        "redis-url": f"redis://:{redis}@redis:6379/0",
        "database-url": f"postgresql://watchllm:{postgres}@postgres:5432/watchllm",
        "clickhouse-url": f"http://watchllm:{clickhouse}@clickhouse:8123",
        "dashboard-clickhouse-url": f"http://dashboard:{clickhouse_dashboard}@clickhouse:8123",
        # Provider keys: fill in to reach a provider from the dev cluster.
        "openai-api-key": "",
        "anthropic-api-key": "",
        "qdrant-api-key": "",
        "analytics-query-token": secrets.token_hex(32),
        "cache-key-secret": secrets.token_hex(32),
        "dashboard-admin-password": secrets.token_urlsafe(18),
        "dashboard-export-secret": secrets.token_hex(32),
    }


def write_once(target: Path) -> bool:
    """Write ``target`` (0600) unless it exists; True when written. Atomic: a reader (or
    a second run) sees no file or the whole file."""
    if target.exists():
        return False
    lines = "".join(f"{key}={value}\n" for key, value in generate().items())
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".secrets-")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(lines)
        os.link(temporary, target)  # fails if another run wrote it meanwhile
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def add_missing(target: Path) -> list[str]:
    """Append to an existing ``target`` the keys it lacks (new since it was written),
    with fresh values; its own values stay. The keys added."""
    have = {line.split("=", 1)[0] for line in target.read_text().splitlines() if "=" in line}
    missing = {key: value for key, value in generate().items() if key not in have}
    if missing:
        text = target.read_text()
        with target.open("a") as file:
            file.write("" if not text or text.endswith("\n") else "\n")
            file.write("".join(f"{key}={value}\n" for key, value in missing.items()))
    return list(missing)


def main() -> int:
    written = write_once(TARGET)
    added = [] if written else add_missing(TARGET)
    state = "wrote" if written else "kept the existing"
    if added:
        state = f"added {', '.join(added)} to the existing"
    print(  # noqa: T201 (a command's output)
        f"{state} {TARGET}\nThe dashboard's admin password: grep dashboard-admin-password"
        f" {TARGET}, or after kubectl apply -k: kubectl -n watchllm-dev get secret"
        " watchllm-secrets -o jsonpath='{.data.dashboard-admin-password}' | base64 -d"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

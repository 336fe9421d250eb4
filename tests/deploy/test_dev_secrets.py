"""The dev overlay's Secret is generated on each machine, never committed (issue 22,
finding 13: the overlay shipped the dashboard admin's password, and every store's).

``make k8s-dev-secrets`` runs k8s/overlays/dev/generate-secrets.py, which writes
``secrets.env`` (0600, ignored by git) once; kustomize's ``secretGenerator`` makes the
Secret from it. What a reviewer would check: the rendered overlay holds no value that
is in the repository, no workload carries a password inline, and two checkouts get
different passwords.
"""

from __future__ import annotations

import runpy
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import K8S, REPO

pytestmark = pytest.mark.unit

DEV = K8S / "overlays/dev"
DEV_SECRETS_SCRIPT = DEV / "generate-secrets.py"
STORE_PASSWORDS = {
    "postgres-password", "redis-password", "clickhouse-password",
    "clickhouse-dashboard-password",
}  # fmt: skip


def _write_once() -> Callable[[Path], bool]:
    write: Callable[[Path], bool] = runpy.run_path(str(DEV_SECRETS_SCRIPT))["write_once"]
    return write


def _dev_secret(objects: list[dict[str, Any]]) -> dict[str, str]:
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == "watchllm-secrets"
    assert "stringData" not in secret  # generated, from secrets.env
    return kustomize.secret_values(secret)


def _in_repository(text: str) -> list[str]:
    """Tracked files (as they are on disk) that contain ``text``."""
    found = subprocess.run(
        ["git", "grep", "-l", "-F", "-e", text], cwd=REPO, capture_output=True, text=True
    )
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.split()


def test_the_rendered_dev_overlay_holds_no_password_of_the_repository() -> None:
    objects = kustomize.render(DEV)
    secret = _dev_secret(objects)
    for name, value in secret.items():
        if value:  # provider keys stay empty until you fill them in
            assert not _in_repository(value), f"{name} is in {_in_repository(value)}"
    assert len(secret["dashboard-admin-password"]) >= 20
    assert not _in_repository("watchllm-dev-" + "admin")  # what the overlay shipped
    # Nothing else carries a secret inline: each one comes from the Secret by reference.
    rendered = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])
    for name, value in secret.items():
        assert not value or value not in rendered, f"{name} appears outside the Secret"
    for obj in objects:
        spec = kustomize.pod_spec(obj)
        for container in spec["containers"] if spec else []:
            for item in container.get("env", []):
                secretive = any(w in item["name"] for w in ("PASSWORD", "TOKEN", "SECRET"))
                assert not (secretive and "value" in item), (obj["metadata"]["name"], item)


def test_the_generated_file_is_ignored_by_git() -> None:
    path = DEV / "secrets.env"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO)
    assert ignored.returncode == 0, "secrets.env is not in .gitignore"
    tracked = subprocess.run(["git", "ls-files", str(DEV)], cwd=REPO, capture_output=True,
                             text=True).stdout.split()  # fmt: skip
    assert "k8s/overlays/dev/secrets.env" not in tracked
    assert "k8s/overlays/dev/secret.yaml" not in tracked


def test_each_checkout_gets_its_own_values_and_keeps_them(tmp_path: Path) -> None:
    write_once = _write_once()
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert write_once(first) and write_once(second)
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    a, b = (
        dict(line.split("=", 1) for line in p.read_text().splitlines()) for p in (first, second)
    )
    template = yaml.safe_load((K8S / "base/secret.example.yaml").read_text())["stringData"]
    assert set(a) == set(template) | STORE_PASSWORDS
    generated = {k for k, v in a.items() if v}
    assert generated == set(a) - {"openai-api-key", "anthropic-api-key", "qdrant-api-key"}
    assert all(a[k] != b[k] for k in generated)
    # A second run keeps the file: the stores' volumes keep their first passwords.
    before = first.read_text()
    assert not write_once(first)
    assert first.read_text() == before
    # A file from an older version gets the keys added since, and keeps its own values.
    add_missing = runpy.run_path(str(DEV_SECRETS_SCRIPT))["add_missing"]
    older = "".join(line + "\n" for line in before.splitlines()
                    if not line.startswith("dashboard-export-secret="))  # fmt: skip
    first.write_text(older)
    assert add_missing(first) == ["dashboard-export-secret"]
    upgraded = dict(line.split("=", 1) for line in first.read_text().splitlines())
    assert set(upgraded) == set(a) and len(upgraded["dashboard-export-secret"]) == 64
    assert {k: v for k, v in upgraded.items() if k != "dashboard-export-secret"} == {
        k: v for k, v in a.items() if k != "dashboard-export-secret"
    }
    assert add_missing(first) == []

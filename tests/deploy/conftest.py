"""The dev overlay's Secret is generated, never committed: make it once per checkout
(what ``make k8s-dev-secrets`` does) before any test renders the overlay."""

from __future__ import annotations

import runpy

import pytest

from tests.deploy.support import K8S

DEV_SECRETS_SCRIPT = K8S / "overlays/dev/generate-secrets.py"


@pytest.fixture(scope="session", autouse=True)
def _dev_secrets() -> None:
    script = runpy.run_path(str(DEV_SECRETS_SCRIPT))
    target = DEV_SECRETS_SCRIPT.parent / "secrets.env"
    if not script["write_once"](target):
        script["add_missing"](target)  # a checkout's file from before a key was added

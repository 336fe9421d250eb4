"""The sign-in form through Streamlit's AppTest, running the real app: its attempts
go through the runtime's one guard, counted for this browser's address, and a
throttled client is told why and when to come back (issue 22, finding 6)."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import PASSWORD, Accounts, app
from watchllm_dashboard.main import shared_runtime
from watchllm_shared.accounts.sign_in_guard import SignInGuard

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]


def submit(at: AppTest, username: str, password: str) -> str:
    """The error shown, as read on screen (its Markdown escapes rendered)."""
    at.text_input(key="sign_in_username").input(username)
    at.text_input(key="sign_in_password").input(password)
    at.button(key="sign_in_submit").click().run()
    return re.sub(r"\\(.)", r"\1", at.error[0].value) if at.error else ""


def test_a_client_that_failed_too_often_is_told_to_wait(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = SignInGuard(client_max_failures=2)  # this test's own counts, not the process's
    monkeypatch.setattr(shared_runtime(), "sign_in_guard", guard)
    at = app().run()
    for _ in range(2):
        assert "wrong username or password" in submit(at, accounts.viewer, "wrong " + PASSWORD)
    shown = submit(at, accounts.viewer, PASSWORD)  # right, but this address is throttled
    assert "too many failed sign-ins from your address: try again in 15 minutes" in shown
    assert not at.header and guard.running == 0

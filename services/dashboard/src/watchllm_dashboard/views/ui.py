"""Small pieces every page uses: carrying out a change, flash messages, admin notices."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from watchllm_shared.accounts import AccountError

T = TypeVar("T")
FLASH = "flash"
VIEWER_NOTE = "You are signed in as a viewer: you can look at everything but change nothing."


def flash(message: str) -> None:
    """Show ``message`` at the top of the next page view."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message)


def attempt(change: Callable[[], T], done: str | None = None) -> T | None:
    """Carry out ``change``; on success flash ``done`` and rerun, on refusal say why."""
    try:
        result = change()
    except AccountError as exc:
        st.error(str(exc))
        return None
    if done is not None:
        flash(done)
        st.rerun()
    return result


def viewer_note(is_admin: bool) -> None:
    if not is_admin:
        st.caption(VIEWER_NOTE)

"""API keys: list with last use; create (the key is shown once), rotate, revoke (admins)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.data import usage
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.views import ui
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.accounts import (
    DEFAULT_ROTATION_GRACE_SECONDS,
    MAX_ROTATION_GRACE_SECONDS,
    ApiKey,
    CreatedKey,
)

REVEALED = "revealed_key"
ACTIVITY_DAYS = 90


def _state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return f"revoked {fmt.ago(key.revoked_at, now)}"
    if key.expires_at is not None:
        if key.expires_at <= now:
            return "expired (rotated)"
        return f"rotated: stops {fmt.moment(key.expires_at)}"
    return "active"


def _reveal(created: CreatedKey, what: str) -> None:
    """Keep the new key for the next view only (it is shown once, then forgotten)."""
    st.session_state[REVEALED] = (what, created.key.display_prefix, created.secret)


def _show_revealed() -> None:
    revealed = st.session_state.pop(REVEALED, None)
    if revealed is None:
        return
    what, prefix, secret = revealed
    st.success(f"{what}: copy it now — WatchLLM keeps only its hash and cannot show it again.")
    st.code(secret, language=None)


def _table(ctx: PageContext, keys: list[ApiKey]) -> None:
    assert ctx.project is not None
    window = TimeWindow(
        "Last 90 days", datetime.now(UTC) - timedelta(days=ACTIVITY_DAYS), datetime.now(UTC)
    )
    activity = usage.key_activity(ctx.analytics, ctx.project.id, window)
    by_id = activity.set_index("key_id") if not activity.empty else pd.DataFrame()
    now = datetime.now(UTC)
    rows = []
    for key in keys:
        stats = by_id.loc[str(key.id)] if str(key.id) in by_id.index else None
        last = stats["last_used"].to_pydatetime() if stats is not None else None
        rows.append(
            {
                "name": key.name or "unnamed",
                "key": f"{key.display_prefix}…",
                "state": _state(key, now),
                "created": fmt.moment(key.created_at),
                "last used": fmt.ago(last, now),
                f"requests ({ACTIVITY_DAYS} d)": fmt.count(
                    stats["requests"] if stats is not None else 0
                ),
                "id": str(key.id),
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def _create(ctx: PageContext) -> None:
    assert ctx.project is not None
    project = ctx.project.name
    with st.form("key_create", clear_on_submit=True):
        label = st.text_input(
            "Name (to tell keys apart)", key="key_create_name", disabled=not ctx.is_admin
        )
        if st.form_submit_button(
            "Create key", type="primary", key="key_create_submit", disabled=not ctx.is_admin
        ):
            created = ui.attempt(lambda: ctx.actions.create_key(project, label.strip() or None))
            if created is not None:
                _reveal(created, f"New key {created.key.display_prefix}… for {ui.plain(project)}")
                st.rerun()


def _label(key: ApiKey) -> str:
    return f"{key.name or 'unnamed'} ({key.display_prefix}…)"


def _rotate_and_revoke(ctx: PageContext, keys: list[ApiKey], now: datetime) -> None:
    # A rotated key is not rotated again (the store refuses: it would revive it); one
    # still in its grace period can be revoked early.
    live = {_label(k): k for k in keys if k.usable_at(now)}
    rotatable = {label: k for label, k in live.items() if not k.rotated}
    if not live:
        return
    left, right = st.columns(2)
    with left, st.form("key_rotate"):
        st.markdown(
            "**Rotate**: a new key; the old one keeps working for the grace period"
            f" ({fmt.span(DEFAULT_ROTATION_GRACE_SECONDS)} unless you change it; 0 stops it"
            " at once)."
        )
        name = st.selectbox(
            "Key", list(rotatable), key="key_rotate_choice", disabled=not ctx.is_admin
        )
        grace = st.number_input(
            "Grace (seconds)",
            min_value=0,
            max_value=MAX_ROTATION_GRACE_SECONDS,
            value=DEFAULT_ROTATION_GRACE_SECONDS,
            step=60,
            key="key_rotate_grace",
            disabled=not ctx.is_admin,
        )
        if st.form_submit_button("Rotate key", key="key_rotate_submit", disabled=not ctx.is_admin):
            if name is None:
                st.error("No key to rotate: every live key is already rotated.")
                return
            old = rotatable[str(name)]
            created = ui.attempt(lambda: ctx.actions.rotate_key(old.id, int(grace)))
            if created is not None:
                _reveal(created, f"Replacement for {old.display_prefix}…")
                ui.flash(
                    f"Rotated {old.display_prefix}…: it stops "
                    f"{'now' if not grace else f'in {fmt.span(int(grace))}'}."
                )
                st.rerun()
    with right, st.form("key_revoke"):
        st.markdown("**Revoke**: refused by every gateway within a second.")
        name = st.selectbox("Key", list(live), key="key_revoke_choice", disabled=not ctx.is_admin)
        sure = st.checkbox(
            "Yes, revoke it now", key="key_revoke_confirm", disabled=not ctx.is_admin
        )
        if st.form_submit_button("Revoke key", key="key_revoke_submit", disabled=not ctx.is_admin):
            if not sure:
                st.error("Tick the box to confirm.")
                return
            key = live[str(name)]
            ui.attempt(lambda: ctx.actions.revoke_key(key.id), f"Revoked {key.display_prefix}….")


def render(ctx: PageContext) -> None:
    st.header("API keys")
    ui.show_flash()
    project = ctx.require_project()
    if project is None:
        return
    _show_revealed()
    keys = ctx.actions.keys(project.name)
    if keys:
        _table(ctx, keys)
    else:
        st.info(f"{ui.plain(project.name)} has no keys yet.")
    st.subheader("Manage")
    ui.viewer_note(ctx.is_admin)
    _create(ctx)
    _rotate_and_revoke(ctx, keys, datetime.now(UTC))

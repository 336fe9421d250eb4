"""Projects & settings: plans, rate limits (project and per key), cache settings,
allowed models; users and the audit log (who changed what, when)."""

from __future__ import annotations

from uuid import UUID

import pandas as pd
import streamlit as st

from watchllm_dashboard import format as fmt
from watchllm_dashboard.actions import BODIES_SEARCHED
from watchllm_dashboard.views import ui
from watchllm_dashboard.views.context import PageContext
from watchllm_shared.accounts import AuditEntry, Plan, Project, Role
from watchllm_shared.accounts.limits import KEEP


def _limit(value: float, current: int | None) -> int | None:
    """What to save for one limit field: ``KEEP`` when the admin left it as shown (so a
    save changes only what was changed), else the new value; 0 means "no limit"."""
    if int(value) == (current or 0):
        return KEEP
    return int(value) or None


def _show_current(prefix: str, owner: object, rpm: int | None, tpm: int | None) -> None:
    """Put the stored limits into the form's inputs when the form is first shown, when
    another key is chosen, or when the stored values changed since (a save, another
    admin). In between, what the admin typed stays."""
    marker = (owner, rpm, tpm)
    shown = st.session_state.get(f"{prefix}_shown")
    # Streamlit forgets an input's value when a view did not show it (another page).
    if shown != marker or f"{prefix}_rpm" not in st.session_state:
        st.session_state[f"{prefix}_shown"] = marker
        st.session_state[f"{prefix}_rpm"] = rpm or 0
        st.session_state[f"{prefix}_tpm"] = tpm or 0


def _projects(ctx: PageContext) -> None:
    projects = ctx.actions.projects()
    if projects:
        st.dataframe(
            pd.DataFrame(
                {
                    "project": [p.name for p in projects],
                    "plan": [p.plan.value for p in projects],
                    "created": [fmt.moment(p.created_at) for p in projects],
                }
            ),
            hide_index=True,
        )
    with st.form("project_create", clear_on_submit=True):
        cells = st.columns([2, 1])
        name = cells[0].text_input(
            "New project", key="project_create_name", disabled=not ctx.is_admin
        )
        plan = cells[1].selectbox(
            "Plan", [p.value for p in Plan], key="project_create_plan", disabled=not ctx.is_admin
        )
        if st.form_submit_button(
            "Create project", key="project_create_submit", disabled=not ctx.is_admin
        ):
            ui.attempt(
                lambda: ctx.actions.create_project(name.strip(), Plan(plan)),
                f"Created project {ui.plain(name.strip())}.",
            )


def _plan_and_limits(ctx: PageContext, project: Project) -> None:
    limits = ctx.actions.limits(project)
    with st.form("project_limits"):
        st.markdown(f"**Plan and limits of {ui.plain(project.name)}** (0 = no per-minute limit)")
        cells = st.columns(3)
        plans = [p.value for p in Plan]
        plan = cells[0].selectbox(
            "Plan",
            plans,
            index=plans.index(project.plan.value),
            key="settings_plan",
            disabled=not ctx.is_admin,
        )
        _show_current("settings", project.id, limits.rpm, limits.tpm)
        rpm = cells[1].number_input(
            "Requests per minute", min_value=0, key="settings_rpm", disabled=not ctx.is_admin
        )
        tpm = cells[2].number_input(
            "Tokens per minute", min_value=0, key="settings_tpm", disabled=not ctx.is_admin
        )
        if st.form_submit_button(
            "Save plan and limits", key="project_limits_submit", disabled=not ctx.is_admin
        ):

            def change() -> None:
                if plan != project.plan.value:
                    ctx.actions.set_plan(project.name, Plan(plan))
                new_rpm, new_tpm = _limit(rpm, limits.rpm), _limit(tpm, limits.tpm)
                if (new_rpm, new_tpm) != (KEEP, KEEP):
                    ctx.actions.set_project_limits(project.name, new_rpm, new_tpm)

            ui.attempt(
                change,
                f"Saved plan and limits of {ui.plain(project.name)}; the limiter applies"
                " them within a second.",
            )


def _key_limits(ctx: PageContext, project: Project) -> None:
    keys = {
        f"{k.name or 'unnamed'} ({k.display_prefix}…)": k
        for k in ctx.actions.keys(project.name)
        if k.revoked_at is None
    }
    if not keys:
        return
    st.markdown("**Per-key limits** (0 = no limit of its own)")
    # The key is chosen outside the form: a choice inside a form reruns nothing, so the
    # inputs could not show the chosen key's limits (they showed 0, and saving cleared).
    name = st.selectbox("Key", list(keys), key="key_limits_choice", disabled=not ctx.is_admin)
    key = keys[str(name)]
    _show_current("key_limits", key.id, key.rpm_limit, key.tpm_limit)
    with st.form("key_limits"):
        cells = st.columns(2)
        rpm = cells[0].number_input(
            "Requests per minute", min_value=0, key="key_limits_rpm", disabled=not ctx.is_admin
        )
        tpm = cells[1].number_input(
            "Tokens per minute", min_value=0, key="key_limits_tpm", disabled=not ctx.is_admin
        )
        current = ", ".join(
            f"{ui.plain(label)}: rpm {k.rpm_limit or '—'}, tpm {k.tpm_limit or '—'}"
            for label, k in keys.items()
            if k.rpm_limit or k.tpm_limit
        )
        st.caption(f"Now: {current or 'no key has limits of its own'}")
        if st.form_submit_button(
            "Save key limits", key="key_limits_submit", disabled=not ctx.is_admin
        ):
            new_rpm, new_tpm = _limit(rpm, key.rpm_limit), _limit(tpm, key.tpm_limit)
            if (new_rpm, new_tpm) == (KEEP, KEEP):
                st.info("Nothing changed.")
                return
            ui.attempt(
                lambda: ctx.actions.set_key_limits(key.id, new_rpm, new_tpm),
                f"Saved the limits of {key.display_prefix}….",
            )


def _cache_settings(ctx: PageContext, project: Project) -> None:
    current = ctx.actions.cache_settings(project.name)
    allowed = ctx.actions.allowed_models(project.name)
    with st.form("cache_settings"):
        st.markdown(f"**Cache and models of {ui.plain(project.name)}**")
        cells = st.columns(4)
        enabled = cells[0].toggle(
            "Cache on", value=current.enabled, key="cache_enabled", disabled=not ctx.is_admin
        )
        modes = ["semantic", "exact"]
        mode = cells[1].selectbox(
            "Mode",
            modes,
            index=modes.index(current.mode),
            key="cache_mode",
            disabled=not ctx.is_admin,
        )
        threshold = cells[2].number_input(
            "Similarity threshold (0 = service default)",
            min_value=0.0,
            max_value=1.0,
            value=float(current.similarity_threshold or 0.0),
            step=0.01,
            key="cache_threshold",
            disabled=not ctx.is_admin,
        )
        ttl = cells[3].number_input(
            "TTL (seconds)",
            min_value=1,
            value=current.ttl_seconds,
            key="cache_ttl",
            disabled=not ctx.is_admin,
        )
        models = st.text_input(
            "Allowed models (glob patterns, @priced, @default; comma-separated; empty = the"
            " gateway's default, WATCHLLM_DEFAULT_ALLOWED_MODELS)",
            value=", ".join(allowed or []),
            key="allowed_models",
            disabled=not ctx.is_admin,
        )
        if st.form_submit_button(
            "Save cache and models", key="cache_settings_submit", disabled=not ctx.is_admin
        ):
            patterns = [m.strip() for m in models.split(",") if m.strip()] or None

            def change() -> None:
                ctx.actions.set_cache_settings(
                    project.name, enabled, mode, threshold or None, int(ttl)
                )
                if patterns != allowed:
                    ctx.actions.set_allowed_models(project.name, patterns)

            ui.attempt(
                change,
                f"Saved the cache settings of {ui.plain(project.name)}; gateways apply them"
                " within a second.",
            )


def _users(ctx: PageContext) -> None:
    st.subheader("Dashboard users")
    users = ctx.actions.users()
    st.dataframe(
        pd.DataFrame(
            {
                "user": [u.username for u in users],
                "role": [u.role.value for u in users],
                "state": ["active" if u.disabled_at is None else "disabled" for u in users],
                "created": [fmt.moment(u.created_at) for u in users],
            }
        ),
        hide_index=True,
    )
    left, right = st.columns(2)
    with left, st.form("user_create", clear_on_submit=True):
        name = st.text_input("Username", key="user_create_name")
        password = st.text_input(
            "Password (12+ characters)", type="password", key="user_create_password"
        )
        role = st.selectbox("Role", [r.value for r in Role], index=1, key="user_create_role")
        if st.form_submit_button("Create user", key="user_create_submit"):
            ui.attempt(
                lambda: ctx.actions.create_user(name, password, Role(role)),
                f"Created {role} {ui.plain(name.strip().lower())}.",
            )
    with right, st.form("user_state"):
        others = [u.username for u in users if u.username != ctx.actions.user.username]
        who = st.selectbox("User", others or ["(no other user)"], key="user_state_choice")
        disable = st.form_submit_button("Disable", key="user_disable", disabled=not others)
        enable = st.form_submit_button("Enable", key="user_enable", disabled=not others)
        if disable:
            ui.attempt(lambda: ctx.actions.disable_user(str(who)), f"Disabled {ui.plain(who)}.")
        if enable:
            ui.attempt(lambda: ctx.actions.enable_user(str(who)), f"Enabled {ui.plain(who)}.")


def _details(entry: AuditEntry, reads_bodies: bool) -> str:
    """An audit entry's details for people: a limit set or removed, never the "kept"
    marker older entries carry (-1); a body search's text only for those who may read
    bodies (what was searched for tells what the bodies hold)."""
    limits = entry.action.endswith(".limits")
    parts = []
    for name, value in entry.details.items():
        if limits and value == KEEP:
            continue
        if entry.action == BODIES_SEARCHED and name == "text" and not reads_bodies:
            parts.append("text hidden (admins and analysts see it)")
            continue
        if value is None:
            if limits:
                parts.append(f"{name} removed")
            continue
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def _audit(ctx: PageContext) -> None:
    st.subheader("Audit log")
    entries = ctx.actions.audit(limit=100)
    if not entries:
        st.caption("No changes recorded yet.")
        return
    names = {p.id: p.name for p in ctx.actions.projects()}
    keys = ctx.actions.keys_by_id({e.key_id for e in entries if e.key_id is not None})

    def key_label(key_id: UUID | None) -> str:
        if key_id is None:
            return ""
        key = keys.get(key_id)
        return f"{key.name or 'unnamed'} ({key.display_prefix}…)" if key else str(key_id)[:8]

    st.dataframe(
        pd.DataFrame(
            {
                "when": [fmt.moment(e.at) for e in entries],
                "who": [e.actor for e in entries],
                "what": [e.action for e in entries],
                "project": [names.get(e.project_id, "") if e.project_id else "" for e in entries],
                "key": [key_label(e.key_id) for e in entries],
                "details": [_details(e, ctx.actions.user.reads_bodies) for e in entries],
            }
        ),
        hide_index=True,
    )


def render(ctx: PageContext) -> None:
    st.header("Projects & settings")
    ui.show_flash()
    ui.viewer_note(ctx.is_admin)
    _projects(ctx)
    if ctx.project is not None:
        st.subheader(f"Settings of {ui.plain(ctx.project.name)}")
        _plan_and_limits(ctx, ctx.project)
        _key_limits(ctx, ctx.project)
        _cache_settings(ctx, ctx.project)
    if ctx.is_admin:
        _users(ctx)
    _audit(ctx)

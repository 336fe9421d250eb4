"""Signing in and out. The session token lives in this browser session's state only;
Postgres holds its hash and decides, on every page view, whether it is still valid."""

from __future__ import annotations

import streamlit as st

from watchllm_dashboard.runtime import Runtime
from watchllm_shared.accounts import AuthenticationError, User

TOKEN = "auth_token"
NOTICE = "auth_notice"


def current_user(runtime: Runtime) -> User | None:
    token = st.session_state.get(TOKEN)
    if not token:
        return None
    user = runtime.run(runtime.sessions.session_user(token))
    if user is None:
        del st.session_state[TOKEN]
        st.session_state[NOTICE] = "Your session has ended or expired: please sign in again."
    return user


def sign_out(runtime: Runtime) -> None:
    token = st.session_state.pop(TOKEN, None)
    if token:
        runtime.run(runtime.sessions.sign_out(token))
    st.session_state[NOTICE] = "Signed out."


def render_sign_in(runtime: Runtime) -> None:
    st.title("WatchLLM")
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.info(notice)
    with st.form("sign_in"):
        username = st.text_input("Username", key="sign_in_username")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary", key="sign_in_submit")
    st.caption(
        "No account yet? An operator creates the first admin with "
        "`watchllm users create NAME --admin`."
    )
    if not submitted:
        return
    try:
        signed_in = runtime.run(runtime.sessions.sign_in(username, password))
    except AuthenticationError as exc:
        st.error(f"Could not sign in: {exc}.")
        return
    st.session_state[TOKEN] = signed_in.token
    st.rerun()

"""Signing in and out. The session token lives in this browser session's state only;
Postgres holds its hash and decides, on every page view, whether it is still valid.

Sign-in attempts are throttled per client address (``accounts.sign_in_guard``). The
address is the connection's peer (``st.context.ip_address``, which Streamlit takes
from the socket, never from a header; loopback shows as ``local``). Behind proxies,
every client would share the proxy's address, and one attacker's failures would
throttle everyone: set ``WATCHLLM_DASHBOARD_TRUSTED_PROXY_HOPS`` to the number of
proxies that append to ``X-Forwarded-For``, and the address the outermost of them saw
is used (entries further left are the client's own claims, never trusted).
"""

from __future__ import annotations

import streamlit as st

from watchllm_dashboard.runtime import Runtime
from watchllm_dashboard.views.ui import plain
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


def client_address(peer: str | None, forwarded_for: list[str], trusted_hops: int) -> str:
    """The address sign-in throttling counts for this browser session.

    ``forwarded_for``: every X-Forwarded-For header's value, in order. Each trusted proxy
    appends the address it saw, so the ``trusted_hops``-th entry from the right is the
    one our outermost proxy saw. Too few entries (a request that bypassed a proxy): the
    peer itself."""
    peer = peer or "local"
    if trusted_hops == 0:
        return peer
    hops = [a.strip() for value in forwarded_for for a in value.split(",") if a.strip()]
    return hops[-trusted_hops] if len(hops) >= trusted_hops else peer


def _this_client(runtime: Runtime) -> str:
    peer = st.context.ip_address
    forwarded = st.context.headers.get_all("X-Forwarded-For")
    return client_address(  # only strings: AppTest's stand-in connection has mocks there
        peer if isinstance(peer, str) else None,
        [value for value in forwarded if isinstance(value, str)],
        runtime.settings.dashboard_trusted_proxy_hops,
    )


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
        signed_in = runtime.run(
            runtime.sessions.sign_in(username, password, client=_this_client(runtime))
        )
    except AuthenticationError as exc:
        st.error(f"Could not sign in: {plain(exc)}.")
        return
    st.session_state[TOKEN] = signed_in.token
    st.rerun()

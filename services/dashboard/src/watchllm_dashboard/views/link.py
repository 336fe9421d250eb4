"""The view in the address bar: page, project, time range and the page's filters live in
the query string (``st.query_params``), so a copied link opens the same view, after the
sign-in when the browser tab has to sign in first.

One signed-in run: :func:`start` (the first one of a browser session adopts the query
string: its values wait, by name, until the sidebar or the page takes them) → before
drawing a widget, the sidebar and the page :func:`take` the value that sets it, check it
against what the widget offers and :func:`refuse` what they cannot use (it keeps its
default) → they :func:`keep` what the view shows → :func:`finish` writes what was kept
to the address bar and says, above the page, which of the link's values were not used
and why. A bad query string costs a message, never a traceback: values are only ever
compared with the widgets' own choices or parsed by the range's parser.

Names: ``page``, ``project``, ``range`` (a preset such as ``last-24-hours``, or
``custom`` with ``from`` and ``to`` in UTC, ``2026-03-01T12:00Z``); Requests: ``status``,
``cache``, ``stream``, ``endpoint`` (each repeatable), ``model``, ``key`` (a key's id),
``q`` (an id's start), ``user``, ``prop``, ``value`` (``attribution``), ``p`` (page
number); Overview: ``model``, ``key``, ``by`` (a property to break usage down by).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import streamlit as st

from watchllm_dashboard.views.ui import plain

PENDING = "link_pending"  # the adopted query string's values not taken yet
REFUSED = "link_refused"  # this run's refusals, for finish()
KEPT = "link_kept"  # what this run's view shows, for the address bar
MAX_SHOWN = 60  # characters of a refused value the message repeats


def slug(name: str) -> str:
    """``Rate limits`` → ``rate-limits``: how pages and ranges are named in a link."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def moment(value: datetime) -> str:
    """An instant as a link writes it: ``2026-03-01T12:00Z`` (seconds when there are)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ" if utc.second else "%Y-%m-%dT%H:%MZ")


def start() -> None:
    state = st.session_state
    if PENDING not in state:  # the first signed-in run of this browser session
        state[PENDING] = {name: st.query_params.get_all(name) for name in st.query_params}
    state[REFUSED] = []
    state[KEPT] = {}


def take(name: str) -> list[str]:
    """The link's values for ``name`` (none once taken, and on every later run)."""
    pending: dict[str, list[str]] = st.session_state.get(PENDING, {})
    return [value for value in pending.pop(name, []) if value != ""]


def take_one(name: str) -> str | None:
    values = take(name)
    if len(values) > 1:
        refuse(name, ", ".join(values), "given more than once")
        return None
    return values[0] if values else None


def take_choices(name: str, choices: Sequence[str]) -> list[str] | None:
    """The link's values for ``name`` that are among ``choices`` (the others refused), or
    None when the link names none."""
    values = take(name)
    if not values:
        return None
    unknown = [v for v in values if v not in choices]
    for value in unknown:
        refuse(name, value, "not one of the choices")
    return [v for v in values if v in choices]


def choose(name: str, state: str, labels: dict[str, str]) -> None:
    """A single chooser (its session state ``state``) set by the link's ``name``;
    ``labels`` maps each value a link may hold to the chooser's label."""
    wanted = take_one(name)
    if wanted in labels:
        st.session_state[state] = labels[wanted]
    elif wanted is not None:
        refuse(name, wanted, "not one of the choices")


def refuse(name: str, value: str, why: str) -> None:
    shown = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
    st.session_state.setdefault(REFUSED, []).append(f"{name} = {shown!r}: {why}")


def keep(name: str, value: str | Sequence[str] | None) -> None:
    """Part of the view: ``name`` goes in the address bar with ``value`` (nothing when
    empty)."""
    st.session_state.setdefault(KEPT, {})[name] = value


def finish(notice: st.delta_generator.DeltaGenerator) -> None:
    """The address bar follows the view; the link's unused values are named in
    ``notice`` (a slot above the page)."""
    pending: dict[str, list[str]] = st.session_state.get(PENDING, {})
    for name, values in pending.items():
        for value in values:
            refuse(name, value, "not a setting of this page")
    st.session_state[PENDING] = {}
    refused: list[str] = st.session_state.pop(REFUSED, [])
    if refused:
        notice.warning(
            "This link holds settings the dashboard cannot use; each shows its default"
            " instead: " + "; ".join(plain(r) for r in refused) + "."
        )
    wanted: dict[str, list[str]] = {}
    for name, value in st.session_state.pop(KEPT, {}).items():
        values = [value] if isinstance(value, str) else list(value or [])
        if [v for v in values if v]:
            wanted[name] = [v for v in values if v]
    shown = {name: st.query_params.get_all(name) for name in st.query_params}
    if shown != wanted:
        st.query_params.from_dict(wanted)

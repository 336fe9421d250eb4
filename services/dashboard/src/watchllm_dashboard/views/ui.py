"""Small pieces every page uses: tenant text made plain, carrying out a change, flash
messages, admin notices.

Tenant text is Markdown-escaped wherever Streamlit renders Markdown. Streamlit renders
Markdown in far more than ``st.markdown``: captions, alerts, headers, metric labels and
values, widget labels, progress texts and every cell of ``st.table``. A model name
``![t](http://host/x)`` made every viewer's browser fetch that URL and a key name
``[click](http://evil)`` showed a link (issue 22, finding 8). So every string that comes
from a tenant, a caller or a store (model, key, project and user names, request and trace
ids, questions, error messages) reaches those through :func:`plain`. ``st.dataframe``
cells, selectbox options and input values are drawn as text already and take the raw
string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from watchllm_shared.accounts import AccountError

T = TypeVar("T")
FLASH = "flash"
# Viewers and analysts alike (the sidebar names the role).
VIEWER_NOTE = "Only admins change things: you can look at everything but change nothing."
# Every ASCII punctuation character: CommonMark lets each be backslash-escaped, and
# every construct (link, image, emphasis, HTML, entity, autolink, Streamlit's
# :color[…] directives, $math$) needs one unescaped.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GFM also links a bare address (``http://…``, ``www.…``) that it finds in the text
# after the escapes are read (the browser test saw it); a word joiner, invisible, cut
# into each such address keeps it text.
_BARE_ADDRESS = re.compile(r"(?i)(://|www(?=\.))")
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """``text`` as Markdown that renders as that text, on one line (a line break could
    start a heading, a list or a code block), with no link (a word joiner, which does not
    show, after each ``://`` and ``www``)."""
    one_line = " ".join(str(text).splitlines())
    unlinked = _BARE_ADDRESS.sub(rf"\1{WORD_JOINER}", one_line)
    return _PUNCTUATION.sub(r"\\\1", unlinked)


def flash(message: str) -> None:
    """Show ``message`` (Markdown: tenant text in it goes through :func:`plain`) at the
    top of the next page view."""
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
        st.error(plain(exc))
        return None
    if done is not None:
        flash(done)
        st.rerun()
    return result


def viewer_note(is_admin: bool) -> None:
    if not is_admin:
        st.caption(VIEWER_NOTE)

"""``views.ui.plain``: tenant text as Markdown that shows exactly that text (issue 22,
finding 8). What the escapes read as is the text, on one line, with no construct left
for a Markdown renderer (the pages' and the browser's tests show it on every page)."""

from __future__ import annotations

import re

import pytest

from watchllm_dashboard.views.ui import WORD_JOINER, plain

pytestmark = pytest.mark.unit

ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
BARE_ADDRESS = re.compile(r"(?i)(https?://|www(?=\.))[-.\w]")
SAMPLES = [
    "![t](http://127.0.0.1:9/x.png)",
    "[click](http://evil.example) <img src=x> &amp; `code`",
    "*em* _em_ **strong** ~~gone~~ :red[colour] :material/home: $x^2$",
    "# heading\n- item\n1. item\n> quote\n    code\n===",
    "www.evil.example and HTTPS://Evil.Example/a_b and user@example.com",
    "back\\slash \\[already escaped\\] | table | {brace}",
    "gpt-4o-mini",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_plain_reads_as_the_text_on_one_line(text: str) -> None:
    escaped = plain(text)
    assert ESCAPED.sub(r"\1", escaped).replace(WORD_JOINER, "") == " ".join(text.splitlines())
    assert "\n" not in escaped


@pytest.mark.parametrize("text", SAMPLES)
def test_plain_leaves_no_markup_and_no_bare_address(text: str) -> None:
    escaped = plain(text)
    # Every punctuation mark is escaped (a backslash before it, itself not escaped).
    marks = re.findall(r"[!-/:-@\[-`{-~]", ESCAPED.sub("", escaped))
    assert marks == [], escaped
    # GFM links addresses it finds after reading the escapes: none is left to find.
    assert not BARE_ADDRESS.search(ESCAPED.sub(r"\1", escaped)), escaped

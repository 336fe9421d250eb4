"""Comparing two parsed questions word by word: what differs, and how much was reworded.

Pure functions over ``text.Parsed``; no failure modes.
"""

from __future__ import annotations

from watchllm_cache.verify import lexicon
from watchllm_cache.verify.text import Parsed


def _one_edit(a: str, b: str) -> bool:
    """One insertion, deletion, substitution or swap of neighbours apart."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :] or (
            i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
        )
    return a[i:] == b[i + 1 :]


def _is_variant(a: str, b: str) -> bool:
    """Typos, spelling variants and derivations of one word ("colection"/"collection",
    "quote"/"quotation"): one edit apart, or one stem the other plus 1-3 letters."""
    if min(len(a), len(b)) < 4:
        return False
    shorter, longer = sorted((a, b), key=len)
    return _one_edit(a, b) or (longer.startswith(shorter) and len(longer) - len(shorter) <= 3)


def _surface(p: Parsed, key: str) -> set[str]:
    return {form for t in p.tokens if t.key == key for form in (t.text, t.stem)}


def content_difference(q: Parsed, c: Parsed) -> tuple[set[str], set[str]]:
    """Content words only one side has, typos and spelling variants paired off."""
    only_q, only_c = set(q.content - c.content), set(c.content - q.content)
    for a in sorted(only_q):
        forms_a = _surface(q, a)
        match = next(
            (b for b in sorted(only_c)
             if any(_is_variant(x, y) for x in forms_a for y in _surface(c, b))),
            None,
        )  # fmt: skip
        if match is not None:
            only_q.discard(a)
            only_c.discard(match)
    return only_q, only_c


def edit_distance(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def rewording(q: Parsed, c: Parsed, differing: int) -> int:
    """Word edits between the two questions beyond the ``differing`` content words."""
    edits = edit_distance([t.key for t in q.tokens], [t.key for t in c.tokens])
    return edits - differing


def one_block_move(a: list[str], b: list[str]) -> bool:
    """b is a with at most one contiguous run of words moved elsewhere."""
    if a == b:
        return True
    for i in range(len(a)):
        for j in range(i + 1, len(a) + 1):
            block, rest = a[i:j], a[:i] + a[j:]
            if any(rest[:k] + block + rest[k:] == b for k in range(len(rest) + 1)):
                return True
    return False


def content_sequence(p: Parsed) -> list[str]:
    """Content keys in order, first occurrence only, words joined by a symmetric link
    ("advantages and disadvantages") merged into one sorted group."""
    out: list[str] = []
    tokens = [t for t in p.tokens if t.key in p.content or t.text in lexicon.SYMMETRIC_LINKS]
    i = 0
    while i < len(tokens):
        group = [tokens[i].key]
        while i + 2 < len(tokens) and tokens[i + 1].text in lexicon.SYMMETRIC_LINKS \
                and tokens[i + 2].key in p.content:  # fmt: skip
            group.append(tokens[i + 2].key)
            i += 2
        if tokens[i].text not in lexicon.SYMMETRIC_LINKS or len(group) > 1:
            key = "+".join(sorted(set(group)))
            if key not in out and key not in lexicon.SYMMETRIC_LINKS:
                out.append(key)
        i += 1
    return out

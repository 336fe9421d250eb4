"""Features of a question pair for the learned verifier (``learned.py``).

One fixed-length vector per pair, from three sources: the frozen embedding model (the
cosine of the two questions), the rules (which of them objects, and the word-level
comparison they are built on: content words left unaligned after typos and variants
are paired, rewording, the order of the shared content words) and the characters
(similarity of the parsed words, so a typo, casing or a greeting costs little).
Pure functions over ``text.Parsed``: no failure modes, ~0.2 ms a pair.

``NAMES`` is the order of the vector; the exported model stores it and refuses to load
when it differs (a model trained on other features would answer nonsense).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from difflib import SequenceMatcher
from itertools import combinations

import numpy as np

from watchllm_cache.verify.compare import (
    content_difference,
    content_sequence,
    edit_distance,
    rewording,
)
from watchllm_cache.verify.rules import RULES
from watchllm_cache.verify.text import Parsed

# Word -> unit vector from the frozen embedding model, for many words at once
# (``WordVectors``); None leaves the alignment features at their "all aligned" value.
WordVectorsFn = Callable[[Sequence[str]], dict[str, np.ndarray]]

NAMES: tuple[str, ...] = (
    "cosine",
    *(f"rule_{rule.__name__}" for rule in RULES),
    "only_a", "only_b", "only_min", "only_max", "content_a", "content_b", "content_jaccard",
    "rewording", "word_edits_ratio", "char_ratio", "trigram_jaccard", "unaligned_char_best",
    "order_discordant", "order_discordant_share", "same_question_type", "length_ratio",
    "align_worst", "align_mean", "align_unaligned_pair",
)  # fmt: skip


def _words(p: Parsed) -> str:
    """The parsed words, lower case: greetings, thanks and punctuation gone,
    contractions expanded (what the rules compare, as characters)."""
    return " ".join(t.text for t in p.tokens)


def _trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def _discordant(a: list[str], b: list[str]) -> tuple[int, float]:
    """Pairs of shared content words whose order differs between the two sides."""
    pos_a = {w: i for i, w in enumerate(a)}
    pos_b = {w: i for i, w in enumerate(b)}
    shared = [w for w in a if w in pos_b]
    total = flipped = 0
    for x, y in combinations(shared, 2):
        total += 1
        flipped += (pos_a[x] - pos_a[y]) * (pos_b[x] - pos_b[y]) < 0
    return flipped, flipped / total if total else 0.0


def _best_char(only_a: set[str], only_b: set[str]) -> float:
    return max((SequenceMatcher(None, x, y).ratio() for x in only_a for y in only_b), default=0.0)


def _content_words(p: Parsed) -> dict[str, str]:
    """content key -> its first surface form."""
    out: dict[str, str] = {}
    for t in p.tokens:
        if t.key in p.content:
            out.setdefault(t.key, t.text)
    return out


def _alignment(
    q: Parsed, c: Parsed, only_q: set[str], only_c: set[str], words: WordVectorsFn | None
) -> list[float]:
    """How well each content word left unaligned finds a word of the other side in the
    embedding model's space: the worst and mean best-match cosine, and the best match
    between the two sides' unaligned words (1.0 when nothing is unaligned)."""
    if words is None or not (only_q or only_c):
        return [1.0, 1.0, 1.0]
    wq, wc = _content_words(q), _content_words(c)
    vectors = words(sorted(set(wq.values()) | set(wc.values())))
    best: list[float] = []
    for own, other, only in ((wq, wc, only_q), (wc, wq, only_c)):
        targets = [vectors[w] for w in other.values()]
        for key in only:
            if key in own and targets:
                best.append(max(float(vectors[own[key]] @ t) for t in targets))
    pair = max(
        (float(vectors[wq[a]] @ vectors[wc[b]]) for a in only_q for b in only_c
         if a in wq and b in wc),
        default=0.0,
    )  # fmt: skip
    if not best:
        return [1.0, 1.0, pair]
    return [min(best), sum(best) / len(best), pair]


def pair_features(
    q: Parsed, c: Parsed, cosine: float, words: WordVectorsFn | None = None
) -> np.ndarray:
    only_q, only_c = content_difference(q, c)
    fired = [float(rule(q, c) is not None) for rule in RULES]
    shared = len(q.content & c.content) + len(q.content - c.content) - len(only_q)
    union = shared + len(only_q) + len(only_c)
    keys_q, keys_c = [t.key for t in q.tokens], [t.key for t in c.tokens]
    longest = max(len(keys_q), len(keys_c), 1)
    nq, nc = _words(q), _words(c)
    tq, tc = _trigrams(nq), _trigrams(nc)
    flipped, flipped_share = _discordant(content_sequence(q), content_sequence(c))
    values = [
        cosine, *fired,
        len(only_q), len(only_c), min(len(only_q), len(only_c)), max(len(only_q), len(only_c)),
        len(q.content), len(c.content), shared / union if union else 1.0,
        rewording(q, c, max(len(only_q), len(only_c))),
        edit_distance(keys_q, keys_c) / longest,
        SequenceMatcher(None, nq, nc).ratio(),
        len(tq & tc) / len(tq | tc) if tq | tc else 1.0,
        _best_char(only_q, only_c),
        flipped, flipped_share, float(q.question == c.question),
        min(len(keys_q), len(keys_c)) / longest,
        *_alignment(q, c, only_q, only_c, words),
    ]  # fmt: skip
    return np.asarray(values, dtype=np.float64)

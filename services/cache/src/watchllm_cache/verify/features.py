"""Features of a question pair for the learned verifier (``learned.py``).

One fixed-length vector per pair, from three sources: the frozen embedding model (the
cosine of the two questions, and how well each content word piece finds a piece of the
other question among the model's contextual token states: ``_contextual``), the rules
(which of them objects, and the word-level comparison they are built on: content words
left unaligned after typos and variants are paired, rewording, the order of the shared
content words, words that exchanged places) and the characters (similarity of the
parsed words, so a typo, casing or a greeting costs little). Pure functions over
``text.Parsed`` and the token states: no failure modes, ~0.3 ms a pair.

``NAMES`` is the order of the vector; the exported model stores it and refuses to load
when it differs (a model trained on other features would answer nonsense).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from difflib import SequenceMatcher
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from watchllm_cache.verify.compare import (
    content_difference,
    content_sequence,
    edit_distance,
    rewording,
)
from watchllm_cache.verify.lexicon import STOPWORDS
from watchllm_cache.verify.rules import RULES
from watchllm_cache.verify.text import Parsed

if TYPE_CHECKING:
    from watchllm_cache.embedding import TokenStates

# Text -> its contextual token states (``embedding.StateMemo``); None leaves the
# contextual alignment features at their "all aligned" value.
StatesFn = Callable[[Sequence[str]], "dict[str, TokenStates]"]

NAMES: tuple[str, ...] = (
    "cosine",
    *(f"rule_{rule.__name__}" for rule in RULES),
    "only_a", "only_b", "only_min", "only_max", "content_a", "content_b", "content_jaccard",
    "rewording", "word_edits_ratio", "char_ratio", "trigram_jaccard", "unaligned_char_best",
    "order_discordant", "order_discordant_share", "same_question_type", "length_ratio",
    "role_swaps",
    "ctx_recall_low", "ctx_recall_high", "ctx_worst", "ctx_second_worst",
    "ctx_below_60", "ctx_below_75", "ctx_all_recall_low",
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


def _role_swaps(q: Parsed, c: Parsed) -> int:
    """Pairs of shared content words that exchanged places: each stands where the other
    stood, judged by the word before it (or after it) on each side ("substitute butter
    for oil" / "substitute oil for butter", "Is a square a rectangle?" reversed)."""

    def neighbours(p: Parsed) -> dict[str, tuple[str, str]]:
        keys = [t.key for t in p.tokens]
        out: dict[str, tuple[str, str]] = {}
        for i, key in enumerate(keys):
            if key in p.content:
                out.setdefault(
                    key, (keys[i - 1] if i else "^", keys[i + 1] if i + 1 < len(keys) else "$")
                )
        return out

    nq, nc = neighbours(q), neighbours(c)
    shared = [k for k in nq if k in nc]
    swaps = 0
    for x, y in combinations(shared, 2):
        for side in (0, 1):
            moved = nq[x][side] != nc[x][side]
            if moved and nq[x][side] == nc[y][side] and nq[y][side] == nc[x][side]:
                swaps += 1
                break
    return swaps


def _content_rows(states: TokenStates) -> np.ndarray:
    """Rows of the pieces that carry content: word pieces of non-stopwords (a
    continuation piece belongs to a longer word) and numbers; not punctuation."""
    keep = [
        i for i, piece in enumerate(states.pieces)
        if piece.startswith("##") or (piece.isalnum() and piece not in STOPWORDS)
    ]  # fmt: skip
    return np.asarray(keep, dtype=np.int64)


def _contextual(q: Parsed, c: Parsed, states: StatesFn | None) -> list[float]:
    """Alignment in the model's contextual token space (BERTScore-like): each content
    piece's best cosine to any piece of the other side. The lower and higher of the two
    sides' mean, the worst and second-worst piece, how many pieces find nothing above
    0.60 / 0.75, and the lower mean over all pieces."""
    if states is None:
        return [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    found = states([q.text, c.text])
    sq, sc = found[q.text], found[c.text]
    if not len(sq.pieces) or not len(sc.pieces):
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    sim = sq.vectors.astype(np.float32) @ sc.vectors.astype(np.float32).T
    best_q, best_c = sim.max(axis=1), sim.max(axis=0)
    content = [best_q[_content_rows(sq)], best_c[_content_rows(sc)]]
    means = [float(side.mean()) if side.size else 1.0 for side in content]
    pooled = np.sort(np.concatenate(content))
    worst = float(pooled[0]) if pooled.size else 1.0
    second = float(pooled[1]) if pooled.size > 1 else worst
    below60 = max(int((side < 0.60).sum()) for side in content)
    below75 = max(int((side < 0.75).sum()) for side in content)
    return [min(means), max(means), worst, second, float(below60), float(below75),
            float(min(best_q.mean(), best_c.mean()))]  # fmt: skip


def pair_features(
    q: Parsed, c: Parsed, cosine: float, states: StatesFn | None = None
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
        _role_swaps(q, c),
        *_contextual(q, c, states),
    ]  # fmt: skip
    return np.asarray(values, dtype=np.float64)

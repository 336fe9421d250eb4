"""The learned pair verifier: a calibrated probability that one answer serves both
questions, from ``features.pair_features``, behind the rules that are certain.

The model is gradient-boosted trees trained by ``make train-verifier``
(``watchllm_cache.training``) and exported as plain JSON (``pair_model.json``: the
trees' split features, thresholds and leaf values, the feature names, the decision
threshold and the training report's data hash); it is evaluated here with no
scikit-learn, ~0.1 ms a pair (features ~0.3 ms). A candidate is a hit when its cosine
clears the candidate threshold (lower than the rules-only path's: 0.75), no veto rule
objects (``VETOES``: numbers, negation, negated words, antonyms, language, names,
direction, word order in short questions, person: what the rules decide with
certainty; the last two fire on 0.02 % and 0 % of the generated positives), and the
probability clears the model's threshold, which training chose for a target false-hit
rate on held-out generated pairs.

Failure modes: a missing, unreadable or mismatched model file (other feature names or
format) raises ``ModelFileError`` at load, so a service configured for the learned
verifier does not start with a broken one; at run time scoring is total.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from watchllm_cache.verify.features import NAMES, StatesFn, pair_features
from watchllm_cache.verify.rules import RULES, Rule
from watchllm_cache.verify.text import Parsed

FORMAT = "watchllm-pair-verifier/1"
DEFAULT_MODEL_PATH = Path(__file__).with_name("pair_model.json")
VETOES: tuple[str, ...] = (
    "numbers", "negation", "negating_prefix", "antonym", "language", "entity", "direction",
    "word_order", "person",
)  # fmt: skip
_VETO_RULES: tuple[Rule, ...] = tuple(rule for rule in RULES if rule.__name__ in VETOES)


class ModelFileError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Tree:
    feature: tuple[int, ...]  # -1 at a leaf
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def score(self, x: np.ndarray) -> float:
        node = 0
        while self.feature[node] >= 0:
            go_left = x[self.feature[node]] <= self.threshold[node]
            node = self.left[node] if go_left else self.right[node]
        return self.value[node]


@dataclass(frozen=True, slots=True)
class PairModel:
    init: float  # log-odds before any tree
    learning_rate: float
    trees: tuple[Tree, ...]
    threshold: float  # probability a hit needs
    data_hash: str

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL_PATH) -> PairModel:
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"pair verifier model {path} unreadable: {exc}") from exc
        if doc.get("format") != FORMAT or tuple(doc.get("features", ())) != NAMES:
            raise ModelFileError(
                f"pair verifier model {path} is not {FORMAT} with this version's features; "
                "run `make train-verifier`"
            )
        trees = tuple(
            Tree(tuple(t["feature"]), tuple(t["threshold"]), tuple(t["left"]),
                 tuple(t["right"]), tuple(t["value"]))
            for t in doc["trees"]
        )  # fmt: skip
        return cls(float(doc["init"]), float(doc["learning_rate"]), trees,
                   float(doc["threshold"]), str(doc["data_hash"]))  # fmt: skip

    def probability(self, features: np.ndarray) -> float:
        raw = self.init + self.learning_rate * sum(tree.score(features) for tree in self.trees)
        return 1.0 / (1.0 + math.exp(-raw))


def veto(q: Parsed, c: Parsed) -> tuple[str, str] | None:
    """(rule name, reason) of the first certain rule that objects, if any."""
    for rule in _VETO_RULES:
        reason = rule(q, c)
        if reason is not None:
            return rule.__name__, reason
    return None


def score(model: PairModel, q: Parsed, c: Parsed, cosine: float, states: StatesFn | None) -> float:
    return model.probability(pair_features(q, c, cosine, states))

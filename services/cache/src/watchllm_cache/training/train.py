"""``make train-verifier``: generate pairs, compute features, fit, export, report.

Steps: ``generate.generate(seed)`` -> pairs (their sha256 is the report's data hash);
embed every text once with the production ``Embedder`` (vectors and contextual token
states from one pass); features from ``verify.features``; hold out 20 % of the groups
(whole seed questions and frame families, so a held-out pair's wording was never
seen); fit scikit-learn's ``GradientBoostingClassifier`` on the candidates the service
would score (cosine >= the candidate threshold, no veto); pick the probability
threshold whose false-hit rate on the held-out negatives is at most ``--target``;
export the trees as JSON (checked to give scikit-learn's probabilities) and write the
report. Minutes on one core; deterministic for a seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.metrics import log_loss, roc_auc_score  # type: ignore[import-untyped]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

from watchllm_cache.embedding import Embedder, StateMemo
from watchllm_cache.settings import SemanticSettings
from watchllm_cache.training.generate import Pair, data_hash, generate
from watchllm_cache.verify import parsed
from watchllm_cache.verify.features import NAMES, pair_features
from watchllm_cache.verify.learned import DEFAULT_MODEL_PATH, FORMAT, PairModel, veto

REPORT_PATH = Path(__file__).parents[3] / "eval" / "verifier-training.json"


def _held_out(group: str) -> bool:
    return int(hashlib.sha256(group.encode()).hexdigest(), 16) % 5 == 0


def featurise(pairs: list[Pair], embedder: Embedder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, cosine, vetoed) per pair."""
    texts = sorted({t for p in pairs for t in (p.a, p.b)}, key=len)
    embedded, token_states = embedder.embed_states(texts, batch_size=32)
    vectors = dict(zip(texts, embedded, strict=True))
    states = StateMemo(embedder, max_pieces=sum(len(s.pieces) for s in token_states))
    states.put(texts, token_states)
    cos = np.array([float(vectors[p.a] @ vectors[p.b]) for p in pairs])
    x = np.stack(
        [
            pair_features(parsed(p.a), parsed(p.b), c, states)
            for p, c in zip(pairs, cos, strict=True)
        ]
    )
    vetoed = np.array([veto(parsed(p.a), parsed(p.b)) is not None for p in pairs])
    return x, cos, vetoed


def export(model: GradientBoostingClassifier, threshold: float, digest: str) -> dict[str, Any]:
    trees = []
    for estimator in model.estimators_[:, 0]:
        t = estimator.tree_
        trees.append({
            "feature": [int(f) if left >= 0 else -1
                        for f, left in zip(t.feature, t.children_left, strict=True)],
            "threshold": [float(v) for v in t.threshold],
            "left": [int(v) for v in t.children_left], "right": [int(v) for v in t.children_right],
            "value": [round(float(v), 6) for v in t.value[:, 0, 0]],
        })  # fmt: skip
    init = float(model._raw_predict_init(np.zeros((1, len(NAMES))))[0, 0])
    return {"format": FORMAT, "features": list(NAMES), "init": init,
            "learning_rate": model.learning_rate, "trees": trees,
            "threshold": round(threshold, 6), "data_hash": digest}  # fmt: skip


def pick_threshold(p: np.ndarray, same: np.ndarray, eligible: np.ndarray, target: float) -> float:
    """Lowest probability threshold with held-out false hits <= target (of all negatives)."""
    negatives = np.sort(p[~same & eligible])[::-1]
    allowed = int(target * int((~same).sum()))
    if allowed >= len(negatives):
        return 0.5
    return float(np.nextafter(negatives[allowed], 2.0))


def rates(hit: np.ndarray, same: np.ndarray) -> dict[str, float]:
    return {"hit_rate": round(float(hit[same].mean()), 4),
            "false_hit_rate": round(float(hit[~same].mean()), 4)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m watchllm_cache.training.train")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--target", type=float, default=0.02, help="held-out false-hit rate")
    parser.add_argument("--candidate-threshold", type=float, default=0.75)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--report", type=Path, default=REPORT_PATH)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pairs = generate(args.seed)
    digest = data_hash(pairs)
    settings = SemanticSettings()
    embedder = Embedder(settings.embedding_model_path, settings.embedding_model_name, 1)
    x, cos, vetoed = featurise(pairs, embedder)
    same = np.array([p.same for p in pairs])
    held = np.array([_held_out(p.group) for p in pairs])
    eligible = (cos >= args.candidate_threshold) & ~vetoed
    fit = eligible & ~held
    model = GradientBoostingClassifier(
        n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=args.seed
    ).fit(x[fit], same[fit])
    linear = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    linear.fit(x[fit], same[fit])
    val = held
    p_val = np.zeros(len(pairs))
    p_val[val] = model.predict_proba(x[val])[:, 1]
    threshold = pick_threshold(p_val[val], same[val], eligible[val], args.target)
    doc = export(model, threshold, digest)
    args.model.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    loaded = PairModel.load(args.model)
    check = np.array([loaded.probability(row) for row in x[val][:200]])
    assert np.allclose(check, model.predict_proba(x[val][:200])[:, 1], atol=1e-4), "export"
    both = val & eligible
    hit_val = both & (p_val >= threshold)
    p_lin = linear.predict_proba(x[both])[:, 1]
    importance = zip(NAMES, model.feature_importances_, strict=True)
    kinds: dict[str, dict[str, Any]] = {}
    for kind in sorted({p.kind for p in pairs}):
        idx = np.array([p.kind == kind for p in pairs]) & val
        if idx.any():
            kinds[kind] = {"pairs": int(idx.sum()), "served": round(float(hit_val[idx].mean()), 4)}
    report = {
        "data_hash": digest, "seed": args.seed, "pairs": len(pairs),
        "positives": int(same.sum()), "trained_on": int(fit.sum()),
        "held_out_pairs": int(val.sum()), "candidate_threshold": args.candidate_threshold,
        "target_false_hit_rate": args.target, "threshold": round(threshold, 6),
        "model": "GradientBoostingClassifier(300 trees, depth 3, lr 0.05, subsample 0.8)",
        "held_out": {
            **rates(hit_val[val], same[val]),
            "candidates_auc": round(float(roc_auc_score(same[both], p_val[both])), 4),
            "candidates_log_loss": round(float(log_loss(same[both], p_val[both])), 4),
            "logistic_regression_auc": round(float(roc_auc_score(same[both], p_lin)), 4),
            "cosine_only_auc": round(float(roc_auc_score(same[both], cos[both])), 4),
        },
        "held_out_by_kind": kinds,
        "feature_importance": dict(sorted(
            ((n, round(float(v), 4)) for n, v in importance),
            key=lambda kv: -kv[1])),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    args.report.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(json.dumps({k: report[k] for k in ("data_hash", "threshold", "held_out",
                                                         "seconds")}) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()

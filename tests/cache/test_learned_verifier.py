"""The learned pair verifier: its training data generator, its features, the exported
model (format, reproducibility) and the learned path through ``SemanticCache``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from watchllm_cache.embedding import DIMENSIONS, Embedder, StateMemo
from watchllm_cache.eval import evaluate
from watchllm_cache.index.edge import EdgeIndex
from watchllm_cache.semantic import SemanticCache
from watchllm_cache.settings import SemanticSettings
from watchllm_cache.training.generate import data_hash, generate
from watchllm_cache.verify import parsed, verify_learned
from watchllm_cache.verify.features import NAMES, pair_features
from watchllm_cache.verify.learned import DEFAULT_MODEL_PATH, ModelFileError, PairModel, Tree

pytestmark = pytest.mark.unit


def test_generation_is_reproducible_and_labelled() -> None:
    pairs = generate(seed=18)
    assert data_hash(pairs) == data_hash(generate(seed=18))
    assert data_hash(pairs) != data_hash(generate(seed=19))
    assert all(p.a != p.b for p in pairs)
    kinds = {p.kind.split("+")[0] for p in pairs}
    assert {"typo", "casing", "polite", "reword", "synonym", "numerals", "reorder"} <= kinds
    assert {"swap", "number", "entity", "sibling", "language", "negation", "scope"} <= kinds
    assert {"preamble", "frame-reword", "frame-other-question", "frame-other-topic",
            "contrast", "frame-contrast", "aspect-reword", "aspect-other"} <= kinds  # fmt: skip
    for p in pairs:
        assert p.same == (p.kind.split("+")[0] not in {
            "swap", "number", "entity", "sibling", "language", "negation", "scope",
            "other-question", "frame-other-question", "frame-other-topic", "contrast",
            "frame-contrast", "aspect-other"})  # fmt: skip
    swaps = [p for p in pairs if p.kind == "swap"]
    words = [
        (sorted(re.findall(r"[\w']+", p.a)), sorted(re.findall(r"[\w']+", p.b))) for p in swaps
    ]
    assert swaps and all(a == b for a, b in words)


def test_committed_model_matches_the_generator() -> None:
    """Seeds or edits changed without `make train-verifier`: the model is stale."""
    model = PairModel.load()
    assert model.data_hash == data_hash(generate(seed=18))
    assert 0.5 < model.threshold < 1.0
    doc = json.loads(DEFAULT_MODEL_PATH.read_text())
    assert doc["features"] == list(NAMES)
    assert DEFAULT_MODEL_PATH.stat().st_size < 2_000_000


def test_a_model_with_other_features_is_refused(tmp_path: Path) -> None:
    doc = json.loads(DEFAULT_MODEL_PATH.read_text())
    doc["features"] = doc["features"][:-1]
    path = tmp_path / "model.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="make train-verifier"):
        PairModel.load(path)
    with pytest.raises(ModelFileError):
        PairModel.load(tmp_path / "missing.json")


def test_trees_are_scored_like_gradient_boosting() -> None:
    # one split on feature 0 at 0.5: left leaf -1, right leaf +2
    tree = Tree((0, -1, -1), (0.5, 0.0, 0.0), (1, -1, -1), (2, -1, -1), (0.0, -1.0, 2.0))
    model = PairModel(init=0.0, learning_rate=0.5, trees=(tree,), threshold=0.5, data_hash="")
    assert model.probability(np.array([0.2])) == pytest.approx(1 / (1 + np.exp(0.5)))
    assert model.probability(np.array([0.9])) == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_features_see_swapped_roles_and_typos() -> None:
    a, b = (
        "Can a landlord sue a tenant for unpaid rent?",
        "Can a tenant sue a landlord for unpaid rent?",
    )
    swapped = dict(zip(NAMES, pair_features(parsed(a), parsed(b), 0.98), strict=True))
    assert len(swapped) == len(NAMES)
    assert swapped["order_discordant"] > 0 and swapped["content_jaccard"] == 1.0
    assert swapped["role_swaps"] > 0
    moved = dict(zip(NAMES, pair_features(
        parsed("How do I freeze a row in Excel?"), parsed("In Excel, how do I freeze a row?"),
        0.95), strict=True))  # fmt: skip
    assert moved["role_swaps"] == 0  # a phrase moved keeps its words' roles
    typo = dict(zip(NAMES, pair_features(
        parsed("How do I cancel my gym membership?"),
        parsed("How do I cancle my gym membership?"), 0.8), strict=True))  # fmt: skip
    assert typo["only_max"] == 0 and typo["char_ratio"] > 0.9


def test_token_states_come_from_the_embedding_pass(embedder: Embedder) -> None:
    texts = ["How do I bake salmon?", "Hi, what is the oven time for salmon fillets? Thanks!"]
    vectors, states = embedder.embed_states(texts)
    assert np.allclose(vectors, embedder.embed(texts), atol=1e-6)
    assert states[0].pieces[:2] == ("how", "do") and "salmon" in states[1].pieces
    assert states[0].vectors.shape == (len(states[0].pieces), DIMENSIONS)
    assert np.allclose(np.linalg.norm(states[1].vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)


def test_the_state_memo_is_bounded_by_pieces_and_recomputes_what_it_dropped(
    embedder: Embedder,
) -> None:
    texts = ["How do I bake salmon?", "How do I grill tuna?", "How do I poach eggs?"]
    _, states = embedder.embed_states(texts)
    memo = StateMemo(embedder, max_pieces=len(states[1].pieces) + len(states[2].pieces))
    memo.put(texts[:1], states[:1])
    memo.put(texts[1:], states[1:])  # over the bound: the oldest text goes
    before = embedder.texts
    assert memo(texts[1:])[texts[2]] is states[2]  # held: no model call
    assert embedder.texts == before
    again = memo([texts[0]])[texts[0]]  # the oldest was dropped: embedded again
    assert embedder.texts == before + 1 and again.pieces == states[0].pieces


def test_contextual_alignment_tells_a_rewording_from_another_question(
    embedder: Embedder,
) -> None:
    memo = StateMemo(embedder)
    question = "What is the best way to learn chess?"

    def features(other: str) -> dict[str, float]:
        values = pair_features(parsed(question), parsed(other), 0.8, memo)
        return dict(zip(NAMES, values, strict=True))

    reworded = features("How should I go about learning chess as a beginner?")
    other = features("What is the history of chess?")
    assert reworded["ctx_worst"] > other["ctx_worst"]
    assert reworded["ctx_recall_low"] > other["ctx_recall_low"]
    blind = dict(zip(NAMES, pair_features(parsed(question), parsed("x"), 0.8), strict=True))
    assert blind["ctx_worst"] == 1.0  # without token states: the neutral value


def test_learned_verdicts() -> None:
    model = PairModel.load()
    refused = verify_learned("How do I convert 5 km to miles?", "How do I convert 8 km to miles?",
                             0.97, 0.75, model)  # fmt: skip
    assert not refused.hit and refused.rule == "numbers"  # a veto, whatever the model says
    low = verify_learned("How do I bake bread?", "What is the capital of France?", 0.3, 0.75, model)
    assert not low.hit and low.rule == "threshold"
    same = verify_learned(
        "How do I reset my router?", "how do i reset my router", 0.99, 0.75, model
    )
    assert same.hit


@pytest.fixture
async def learned_cache(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> AsyncIterator[SemanticCache]:
    settings = semantic_settings.model_copy(update={"cache_verifier": "learned"})
    cache = SemanticCache(embedder, EdgeIndex.open(tmp_path / "edge", DIMENSIONS), settings)
    yield cache
    await cache.close()


def test_the_rules_stay_the_default(semantic_settings: SemanticSettings) -> None:
    assert semantic_settings.cache_verifier == "rules"


async def test_learned_path_through_the_cache(
    learned_cache: SemanticCache, embedder: Embedder
) -> None:
    project = uuid.uuid4()
    assert learned_cache.default_threshold == 0.75
    question = "How do I renew my library card online?"
    _, vector = await learned_cache.lookup(project, "s", question, None)
    await learned_cache.store(project, "s", question, "k1", 60, vector)
    texts = embedder.texts
    hit, _ = await learned_cache.lookup(project, "s", "HOW DO I RENEW MY LIBRARY CARD ONLINE", None)
    assert hit.hit and hit.exact_key == "k1"
    # the candidate's token states were kept from the lookup that embedded it
    assert embedder.texts == texts + 1
    swapped, _ = await learned_cache.lookup(
        project, "s", "How do I renew my library card online in 2 days?", None
    )
    assert not swapped.hit and swapped.rule == "numbers"
    strict, _ = await learned_cache.lookup(project, "s", "how do i renew my library card", 0.999)
    assert not strict.hit and strict.rule == "threshold"  # a project's bar is the floor


def test_a_broken_model_file_stops_the_cache(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> None:
    settings = semantic_settings.model_copy(
        update={"cache_verifier": "learned", "cache_verifier_model_path": tmp_path / "none.json"}
    )
    with pytest.raises(ModelFileError):
        SemanticCache(embedder, EdgeIndex.open(tmp_path / "edge", DIMENSIONS), settings)


def test_eval_reports_the_learned_path_beside_the_rules(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> None:
    pairs = [
        {"a": "How do I cancel my gym membership?", "b": "how do i cancel my gym membership",
         "same": True, "kind": "casing"},
        {"a": "Can a landlord sue a tenant?", "b": "Can a tenant sue a landlord?",
         "same": False, "kind": "swap"},
        {"a": "Is the museum free for children under 12?",
         "b": "Is the museum free for children under 16?", "same": False, "kind": "number"},
    ]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    settings = semantic_settings.model_copy(update={"cache_verifier": "learned"})
    report = evaluate(path, settings, embedder, compare=True)
    assert report["settings"]["verifier"] == "learned" and report["settings"]["threshold"] == 0.75
    assert report["overall"] == {"pairs": 3, "hit_rate": 1.0, "false_hit_rate": 0.0}
    assert report["compare"]["verifier"] == "rules"
    assert set(report["compare"]) == {"verifier", "overall", "by_kind", "by_source"}
    plain = evaluate(path, semantic_settings, embedder)
    assert "compare" not in plain and plain["settings"]["verifier"] == "rules"

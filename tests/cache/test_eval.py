"""The eval command on a small pair file written here (never the dev data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watchllm_cache.embedding import Embedder
from watchllm_cache.eval import evaluate, matched_baseline
from watchllm_cache.settings import SemanticSettings

PAIRS = [
    {"a": "How do I cancel my gym membership?", "b": "How can I cancel my gym membership?",
     "same": True, "kind": "paraphrase", "source": "written"},
    {"a": "How do I get a parking permit?",
     "b": "What's the procedure for obtaining authorisation to leave my car on the street?",
     "same": True, "kind": "paraphrase", "source": "written"},
    {"a": "Is the museum free for children under 12?",
     "b": "Is the museum free for children under 16?",
     "same": False, "kind": "number", "source": "written"},
    {"a": "How do I move my photos from my phone to my laptop?",
     "b": "How do I move my photos from my laptop to my phone?",
     "same": False, "kind": "direction", "source": "other"},
    {"a": "How do I bake sourdough bread?", "b": "What is the capital of France?",
     "same": False, "kind": "unrelated", "source": "other"},
]  # fmt: skip


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


@pytest.mark.unit
def test_eval_report_shape_and_numbers(
    pairs_file: Path, embedder: Embedder, semantic_settings: SemanticSettings
) -> None:
    report = evaluate(pairs_file, semantic_settings, embedder, with_steps=True)
    assert set(report) == {"overall", "by_kind", "by_source", "baseline", "settings", "steps"}
    assert report["overall"] == {"pairs": 5, "hit_rate": 0.5, "false_hit_rate": 0.0}
    assert report["by_kind"]["paraphrase"] == {"pairs": 2, "hit_rate": 0.5, "false_hit_rate": None}
    assert report["by_kind"]["number"] == {"pairs": 1, "hit_rate": None, "false_hit_rate": 0.0}
    assert report["by_source"]["other"]["false_hit_rate"] == 0.0
    baseline = report["baseline"]
    assert set(baseline) == {"overall", "by_kind", "by_source"}
    assert baseline["overall"]["false_hit_rate"] == 0.0  # matched to ours
    # a bare threshold must sit above the direction swap (cosine ~0.99) to refuse it
    assert report["settings"]["baseline_threshold"] > 0.98
    assert baseline["overall"]["hit_rate"] <= report["overall"]["hit_rate"]
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["threshold"]["false_hit_rate"] > 0  # cosine alone serves a wrong answer
    assert steps["narrower"]["false_hit_rate"] == 0.0


@pytest.mark.unit
def test_matched_baseline_threshold() -> None:
    from watchllm_cache.eval import Outcome

    negatives = [Outcome(False, "k", "s", sim, False, None) for sim in (0.9, 0.8, 0.7, 0.6)]
    assert matched_baseline(negatives, 0.0) > 0.9
    assert 0.8 < matched_baseline(negatives, 0.25) <= 0.9
    assert matched_baseline(negatives, 1.0) == -1.0


@pytest.mark.slow
def test_eval_command_prints_one_json_object(pairs_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "watchllm_cache", "eval", str(pairs_file), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert set(report) == {"overall", "by_kind", "by_source", "baseline", "settings"}
    assert report["overall"]["pairs"] == 5

"""Cache service settings: read once in ``__main__`` and passed down.

The embedding model is a local folder (``make models`` installs it, see
``services/cache/scripts/install_model.py``); nothing is ever downloaded at run time.
Qdrant: qdrant-edge in-process on ``WATCHLLM_QDRANT_EDGE_PATH`` by default; a Qdrant
server through qdrant-client when ``QDRANT_URL`` is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field

from watchllm_shared.settings import WatchLLMSettings

MODEL_DIR_NAME = "all-MiniLM-L6-v2-int8"


def default_model_path() -> Path:
    """``.models/<model>`` in the working directory, else in the source checkout this
    package is installed from (an editable install); the first that exists."""
    candidates = [Path.cwd() / ".models" / MODEL_DIR_NAME]
    candidates += [parent / ".models" / MODEL_DIR_NAME for parent in Path(__file__).parents]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def default_pair_model_path() -> Path:
    from watchllm_cache.verify.learned import DEFAULT_MODEL_PATH

    return DEFAULT_MODEL_PATH


class SemanticSettings(WatchLLMSettings):
    """What the semantic core needs: the model, the index, the verification threshold."""

    embedding_model_path: Path = Field(
        default_factory=default_model_path,
        description="Folder with model.onnx, tokenizer.json and tokenizer configs.",
    )
    embedding_model_name: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="The fastembed model name the folder holds (sets pooling, dims).",
    )
    embedding_threads: int = Field(default=1, gt=0, description="onnxruntime threads.")
    cache_threshold: float = Field(
        default=0.90, gt=0, le=1,
        description="Cosine a candidate needs before verification looks at it; "
        "a project or a request may override it.",
    )  # fmt: skip
    cache_verifier: Literal["rules", "learned"] = Field(
        default="rules",
        description="rules: cosine >= cache_threshold and every rule (verify/__init__.py); "
        "learned: cosine >= cache_candidate_threshold, the certain rules as vetoes, then "
        "the pair model's probability (verify/learned.py).",
    )
    cache_candidate_threshold: float = Field(
        default=0.75, gt=0, le=1,
        description="Cosine a candidate needs before the learned verifier scores it "
        "(used when no project or request threshold is set).",
    )  # fmt: skip
    cache_verifier_model_path: Path = Field(
        default_factory=lambda: default_pair_model_path(),
        description="The learned verifier's exported model (make train-verifier).",
    )
    cache_candidates: int = Field(
        default=4, gt=0, description="Nearest neighbours verified per lookup."
    )
    cache_purge_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often expired index points are deleted."
    )
    qdrant_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QDRANT_URL", "WATCHLLM_QDRANT_URL"),
        description="A Qdrant server; unset: qdrant-edge in-process.",
    )
    qdrant_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_API_KEY", "WATCHLLM_QDRANT_API_KEY")
    )
    qdrant_collection: str = "watchllm_semantic_cache"
    qdrant_edge_path: Path = Field(default=Path(".watchllm/qdrant-edge"))

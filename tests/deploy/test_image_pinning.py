"""docs/deployment.md's way to pin images by digest renders what it promises (issue 22,
finding 13): the snippet of "Pinning images by digest", put in an overlay on top of
k8s/overlays/prod, gives the gateway ``registry/name:tag@sha256:…`` in our renderer and
in ``kubectl kustomize`` alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import K8S, REPO

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "0123456789abcdef" * 4


def _documented_images() -> list[dict[str, Any]]:
    text = (REPO / "docs/deployment.md").read_text()
    section = text.split("**Pinning images by digest.**", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the section has no yaml example"
    images: list[dict[str, Any]] = yaml.safe_load(block[1].replace("sha256:<64 hex digits>",
                                                                   DIGEST))["images"]  # fmt: skip
    return images


def _pinned_overlay(tmp_path: Path) -> Path:
    overlay = tmp_path / "pinned"
    overlay.mkdir()
    base = os.path.relpath(K8S / "overlays/prod", overlay)
    spec = {"resources": [base], "images": _documented_images()}
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    return overlay


def _gateway_image(objects: list[dict[str, Any]]) -> str:
    (gateway,) = [o for o in objects if kustomize.key(o) == ("Deployment", "gateway")]
    image: str = kustomize.pod_spec(gateway)["containers"][0]["image"]  # type: ignore[index]
    return image


def test_the_documented_digest_pin_renders_name_tag_and_digest(tmp_path: Path) -> None:
    (image,) = _documented_images()
    expected = f"{image['newName']}:{image['newTag']}@{DIGEST}"
    assert _gateway_image(kustomize.render(_pinned_overlay(tmp_path))) == expected


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_pins_the_same_way(tmp_path: Path) -> None:
    overlay = _pinned_overlay(tmp_path)
    result = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    theirs = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert _gateway_image(theirs) == _gateway_image(kustomize.render(overlay))

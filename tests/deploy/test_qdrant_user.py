"""Compose runs Qdrant as a non-root user (issue 22, finding 13), the same image and
uid as the dev overlay's StatefulSet, with its data on a named volume that the image's
/qdrant (owned by that uid) initialises."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import COMPOSE_FILE, COMPOSE_TEST_ENV, K8S, docker_compose_config

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def qdrant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The qdrant service as Docker Compose resolves it."""
    env_file = tmp_path_factory.mktemp("qdrant") / "empty.env"
    env_file.write_text("")
    result = docker_compose_config(
        COMPOSE_TEST_ENV, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"
    )
    assert result.returncode == 0, result.stderr
    service: dict[str, Any] = yaml.safe_load(result.stdout)["services"]["qdrant"]
    return service


def _dev_qdrant() -> tuple[dict[str, Any], dict[str, Any]]:
    objects = kustomize.render(K8S / "overlays/dev")
    (statefulset,) = [o for o in objects if kustomize.key(o) == ("StatefulSet", "qdrant")]
    pod = kustomize.pod_spec(statefulset)
    assert pod is not None
    return pod, pod["containers"][0]


def test_compose_runs_qdrant_as_the_dev_overlays_non_root_user(qdrant: dict[str, Any]) -> None:
    uid, _, gid = str(qdrant["user"]).partition(":")
    assert int(uid) != 0 and int(gid) != 0, qdrant["user"]
    assert qdrant["image"].endswith("-unprivileged"), qdrant["image"]
    assert qdrant["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in qdrant["security_opt"]
    pod, container = _dev_qdrant()
    assert container["image"] == qdrant["image"]
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))
    assert context["runAsNonRoot"] is True


def test_qdrant_keeps_its_data_on_a_named_volume(qdrant: dict[str, Any]) -> None:
    """A named volume (not a host folder, which would keep the host's owner) starts with
    the image's /qdrant/storage, owned by the image's uid."""
    (volume,) = qdrant["volumes"]
    source, target = str(volume).split(":")[:2]  # docker-compose 1.x: the short form
    assert target == "/qdrant/storage", volume
    assert not source.startswith((".", "/")), f"{source} is a host folder"

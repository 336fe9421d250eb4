"""The Redis that compose and the dev overlay run has a memory limit and evicts nothing.

Without ``maxmemory`` Redis grows until the kernel or Kubernetes kills it; with an
evicting policy a full Redis drops limiter counters, which raises limits (issue 22,
finding 2; docs/deployment.md, "Redis memory"). ``tests/e2e/test_redis_memory.py``
shows limits holding at ``maxmemory`` with this policy.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy import kustomize
from tests.deploy.support import K8S, compose_raw, env_example

pytestmark = pytest.mark.unit

# redis.conf: 1k = 1000 bytes, 1kb = 1024, and so on.
_UNITS = {"k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30, "": 1}
_K8S_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _option(args: list[str], name: str) -> str:
    assert name in args, f"redis-server runs without {name}: {args}"
    return args[args.index(name) + 1]


def _redis_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-z]*)", value.lower()).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit]


def test_compose_runs_redis_with_a_memory_limit_and_no_eviction() -> None:
    args = [str(a) for a in compose_raw()["services"]["redis"]["command"]]
    assert _option(args, "--maxmemory-policy") == "noeviction"
    assert _option(args, "--maxmemory") == "${REDIS_MAXMEMORY:-1gb}"
    assert _redis_bytes(env_example()["REDIS_MAXMEMORY"].value) == 2**30


def test_the_dev_overlay_runs_redis_with_a_limit_below_its_container() -> None:
    objects = kustomize.render(K8S / "overlays/dev")
    (redis,) = [
        o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "redis"
    ]
    (container,) = kustomize.pod_spec(redis)["containers"]  # type: ignore[index]
    args = [str(a) for a in container["args"]]
    assert _option(args, "--maxmemory-policy") == "noeviction"
    maxmemory = _redis_bytes(_option(args, "--maxmemory"))
    limit = container["resources"]["limits"]["memory"]
    limit_bytes = int(limit[:-2]) * _K8S_UNITS[limit[-2:]]
    # Fragmentation, client buffers and the AOF rewrite's fork live above maxmemory.
    assert maxmemory <= 0.75 * limit_bytes, (maxmemory, limit)

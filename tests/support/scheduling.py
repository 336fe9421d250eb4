"""How ``make test`` spreads the suite over its pytest-xdist workers (``--dist loadgroup
--no-loadscope-reorder``): which tests must share a worker, and what starts first.

- **Groups.** Every test is in the group of its file (a module's shared stack stays on
  one worker, as ``--dist loadfile`` did), except in folders whose conftest starts a
  package-wide stack (``SHARED_STACK_FOLDERS``): there the whole folder is one group, so
  that stack starts once per run instead of once per worker that got one of its files.
- **Order.** Work units go out in the order of the items, longest first (``ORDER``):
  xdist's default order (most tests first) sent the unit-test files with hundreds of
  cases first and left the slowest files — whole stacks, two or three tests each — for
  the end, where one worker ran them alone while the other had nothing left to do.

Both are about wall time only; a test never depends on which worker or order runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_STACK_FOLDERS = ("tests/dashboard", "tests/routing")

# Longest first, by what was measured (seconds of one worker, quiet 2-core machine): a
# path matches its first prefix here; anything unlisted runs last, in collection order.
ORDER = (
    "tests/dashboard/",  # ~150 s: one stack for the folder, a browser, a process
    "tests/e2e/test_up_supervision.py",  # ~60 s: one `up` stack restarted once
    "tests/e2e/test_deployment_checks.py",  # ~55 s: one `up` stack
    "tests/e2e/test_watchllm_up.py",
    "tests/e2e/test_trace_across_services.py",
    "tests/e2e/test_tenant_concurrency.py",
    "tests/e2e/test_up_replicas.py",
    "tests/analytics/test_crash.py",
    "tests/e2e/test_gateway_memory.py",
    "tests/limiter/test_shutdown.py",
    "tests/cache_e2e/",
    "tests/routing/",
    "tests/e2e/",
    "tests/limiter/",
    "tests/analytics/",
    "tests/integration/",
    "tests/cache/",
    "tests/deploy/",
    "tests/unit/",
)


def _relative(item: pytest.Item, root: Path) -> str:
    return item.path.relative_to(root).as_posix()


def group_of(path: str) -> str:
    for folder in SHARED_STACK_FOLDERS:
        if path.startswith(folder + "/"):
            return folder
    return path


def rank_of(path: str) -> int:
    return next((i for i, prefix in enumerate(ORDER) if path.startswith(prefix)), len(ORDER))


def arrange(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each item with its group and sort the items longest-first (a stable sort:
    tests keep their order within a file, files within a rank)."""
    root = config.rootpath
    if config.pluginmanager.hasplugin("xdist"):  # the mark is xdist's (`-p no:xdist`)
        for item in items:
            item.add_marker(pytest.mark.xdist_group(group_of(_relative(item, root))))
    items.sort(key=lambda item: rank_of(_relative(item, root)))

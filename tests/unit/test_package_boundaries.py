"""Layout contract (DESIGN.md): services import only the shared package and their own,
and each service declares every third-party package it imports."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())
# Import name → distribution name, where they differ.
DISTRIBUTIONS = {"redis": "redis", "prometheus_client": "prometheus-client",
                 "opentelemetry": "opentelemetry-api", "pydantic_settings": "pydantic-settings",
                 "starlette": "fastapi", "yaml": "pyyaml", "qdrant_edge": "qdrant-edge-py",
                 "py_rust_stemmers": "py-rust-stemmers", "sklearn": "scikit-learn"}  # fmt: skip
# Packages another declared one brings and pins as part of its API: Streamlit (1.67 on)
# serves apps from Starlette and takes Starlette routes (st.App), as FastAPI does.
PROVIDED_BY = {"starlette": {"streamlit"}}


def imported_top_levels(package_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def declared(pyproject: Path) -> set[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    names = set()
    for requirement in project.get("dependencies", []):
        name = requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        names.add(name.lower())
    return names


def shared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())["project"]
    names = {d.split("[")[0].split(">")[0].strip().lower() for d in project["dependencies"]}
    names.add("asyncpg")  # the [postgres] extra every Postgres reader asks for
    return names


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_services_never_import_each_other(service: Path) -> None:
    own = f"watchllm_{service.name}"
    imported = imported_top_levels(service / "src" / own)
    foreign = {
        n for n in imported if n.startswith("watchllm_") and n not in {own, "watchllm_shared"}
    }
    assert not foreign, f"{service.name} imports {foreign}"


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_services_declare_what_they_import(service: Path) -> None:
    own = f"watchllm_{service.name}"
    imported = imported_top_levels(service / "src" / own)
    third_party = {
        n for n in imported
        if n not in sys.stdlib_module_names and not n.startswith("watchllm_")
    }  # fmt: skip
    available = declared(service / "pyproject.toml") | shared_distributions()
    missing = {
        n for n in third_party
        if DISTRIBUTIONS.get(n, n).replace("_", "-").lower() not in available
        and not PROVIDED_BY.get(n, set()) & available
    }  # fmt: skip
    assert not missing, f"{service.name} imports undeclared packages: {missing}"


def test_the_gateway_needs_no_embedding_model_streamlit_or_migration_tooling() -> None:
    deps = declared(ROOT / "services" / "gateway" / "pyproject.toml")
    assert not deps & {"fastembed", "streamlit", "alembic", "sqlalchemy", "chdb", "click"}

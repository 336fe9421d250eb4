"""``watchllm projects models`` against the real Postgres: the command a refused caller
is told an operator runs (issue 22, finding 12; ``gateway/model_access.py``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.conftest import unique
from watchllm_shared.cli.main import cli

pytestmark = pytest.mark.integration


def run(database_url: str, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, ["projects", *args], env={"DATABASE_URL": database_url})
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_add_remove_and_back_to_the_default(database_url: str) -> None:
    """Each change is read back by a new run (the list as Postgres holds it)."""
    project = unique("models")
    run(database_url, "create", project)
    assert "the gateway's default applies" in run(database_url, "models", project)
    # A project without a list keeps the default and gains the model.
    added = run(database_url, "models", project, "--add", "ft:gpt-4o-mini:acme:*")
    assert f"project {project} may use: @default, ft:gpt-4o-mini:acme:*" in added
    assert "may use: @default, ft:gpt-4o-mini:acme:*" in run(database_url, "models", project)
    narrowed = run(database_url, "models", project, "--remove", "@default", "--add", "@priced")
    assert "may use: ft:gpt-4o-mini:acme:*, @priced" in narrowed
    run(database_url, "models", project, "--remove", "ft:gpt-4o-mini:acme:*", "--remove", "@priced")
    assert "may use: no model" in run(database_url, "models", project)  # an empty list
    assert "default applies" in run(database_url, "models", project, "--use-default")
    assert "default applies" in run(database_url, "models", project)


def test_what_a_list_cannot_hold_is_refused(database_url: str) -> None:
    project = unique("models")
    run(database_url, "create", project)
    assert "@nope" in run(database_url, "models", project, "--add", "@nope", ok=False)
    run(database_url, "models", project, "--add", "x", "--use-default", ok=False)
    assert "no project named" in run(database_url, "models", unique("nope"), ok=False)
    assert "Usage:" in run(database_url, "models", "--help")

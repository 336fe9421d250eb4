"""The `watchllm` command against the real Postgres: projects and keys."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from tests.conftest import unique
from watchllm_shared.cli.main import cli

pytestmark = pytest.mark.integration

KEY = re.compile(r"lgw_[A-Za-z0-9_\-]{43}")


def run(database_url: str, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": database_url})
    assert (result.exit_code == 0) is ok, result.output
    return result.output


COMMANDS = [
    [], ["up"], ["migrate"], ["projects", "create"], ["projects", "list"],
    ["projects", "set-plan"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
    ["keys", "rotate"], ["fake-provider"], ["projects", "limits"], ["keys", "limits"],
    ["cache"], ["cache", "flush"], ["cache", "delete"], ["cache", "settings"],
    ["projects", "budget"], ["keys", "budget"], ["projects", "logging"], ["alerts", "add"],
    ["alerts", "list"], ["alerts", "remove"], ["alerts", "test"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(database_url: str, command: list[str]) -> None:
    assert "Usage:" in run(database_url, *command, "--help")


def test_key_lifecycle_create_list_rotate_revoke(database_url: str) -> None:
    project = unique("cli")
    assert "(STARTER)" in run(database_url, "projects", "create", project, "--plan", "STARTER")
    created = run(database_url, "keys", "create", "--project", project)
    key = KEY.search(created)
    assert key is not None and "cannot show it again" in created
    key_id = re.search(r"key id: (\S+)", created).group(1)  # type: ignore[union-attr]
    listing = run(database_url, "keys", "list", "--project", project)
    assert key_id in listing and key.group(0) not in listing and key.group(0)[:12] in listing
    rotated = run(database_url, "keys", "rotate", key_id, "--grace", "60")
    new_key = KEY.search(rotated)
    assert new_key is not None and new_key.group(0) != key.group(0)
    assert "rotated, works until" in run(database_url, "keys", "list", "--project", project)
    again = run(database_url, "keys", "rotate", key_id, ok=False)
    assert "already rotated" in again and "Traceback" not in again
    new_id = re.search(r"new key id: (\S+)", rotated).group(1)  # type: ignore[union-attr]
    assert "revoked" in run(database_url, "keys", "revoke", new_id)
    too_long = run(database_url, "keys", "rotate", key_id, "--grace", "999999999999", ok=False)
    assert "Invalid value for '--grace'" in too_long and "Traceback" not in too_long
    listing = run(database_url, "keys", "list", "--project", project)
    assert listing.count("\n") == 2  # the rotated key and its (revoked) replacement only


def test_a_rotated_key_keeps_working_for_an_hour_unless_told(database_url: str) -> None:
    """The same default as the dashboard's: rolling a new key out takes time."""
    project = unique("cli")
    run(database_url, "projects", "create", project)
    created = run(database_url, "keys", "create", "--project", project)
    key_id = re.search(r"key id: (\S+)", created).group(1)  # type: ignore[union-attr]
    assert "stops working in 3600 s" in run(database_url, "keys", "rotate", key_id)


def test_bad_input_gets_a_clear_error_and_changes_nothing(database_url: str) -> None:
    project = unique("cli")
    run(database_url, "projects", "create", project)
    assert "already exists" in run(database_url, "projects", "create", project, ok=False)
    assert "invalid project name" in run(database_url, "projects", "create", "no spaces", ok=False)
    assert "no project named" in run(
        database_url, "keys", "create", "--project", "nope-x", ok=False
    )
    assert "not a key id" in run(database_url, "keys", "revoke", "not-a-uuid", ok=False)
    assert "Invalid value" in run(
        database_url, "projects", "create", "p2", "--plan", "GOLD", ok=False
    )
    assert "cannot connect" in run(
        "postgresql://postgres@127.0.0.1:1/none", "keys", "list", ok=False
    )

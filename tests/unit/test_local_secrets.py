"""The secrets `watchllm up` generates once and keeps under the data folder: created
private, reused, the operator's own value winning, a readable copy refused; and the
services' own check of a secret's presence and length."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from watchllm_shared.cli.local_secrets import (
    ANALYTICS_QUERY_TOKEN,
    SecretFileError,
    load_or_create,
    read_secret,
    resolve,
    secret_path,
)
from watchllm_shared.cli.settings import CliSettings
from watchllm_shared.settings import MIN_SECRET_CHARS, MissingSecret, required_secret

pytestmark = pytest.mark.unit


def test_a_secret_is_created_once_private_and_then_reused(tmp_path: Path) -> None:
    assert read_secret(tmp_path, ANALYTICS_QUERY_TOKEN) is None
    first = load_or_create(tmp_path, ANALYTICS_QUERY_TOKEN)
    path = secret_path(tmp_path, ANALYTICS_QUERY_TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= MIN_SECRET_CHARS and required_secret(SecretStr(first), "X", "x")
    assert load_or_create(tmp_path, ANALYTICS_QUERY_TOKEN) == first  # a restart: the same
    assert read_secret(tmp_path, ANALYTICS_QUERY_TOKEN) == first
    assert load_or_create(tmp_path / "other", ANALYTICS_QUERY_TOKEN) != first  # per folder


def test_the_operators_value_wins_and_nothing_is_written(tmp_path: Path) -> None:
    given = SecretStr("o" * 40)
    assert resolve(tmp_path, ANALYTICS_QUERY_TOKEN, given) == {
        "WATCHLLM_ANALYTICS_QUERY_TOKEN": "o" * 40
    }
    assert not secret_path(tmp_path, ANALYTICS_QUERY_TOKEN).exists()
    generated = resolve(tmp_path, ANALYTICS_QUERY_TOKEN, None)
    kept = read_secret(tmp_path, ANALYTICS_QUERY_TOKEN)
    assert generated == {"WATCHLLM_ANALYTICS_QUERY_TOKEN": kept}


def test_a_secret_others_may_read_or_an_empty_one_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path, ANALYTICS_QUERY_TOKEN)
    path = secret_path(tmp_path, ANALYTICS_QUERY_TOKEN)
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match=f"chmod 600 {path}"):
        read_secret(tmp_path, ANALYTICS_QUERY_TOKEN)
    with pytest.raises(SecretFileError):
        load_or_create(tmp_path, ANALYTICS_QUERY_TOKEN)  # never silently replaced either
    path.write_text("")
    path.chmod(0o600)
    with pytest.raises(SecretFileError, match="is empty"):
        read_secret(tmp_path, ANALYTICS_QUERY_TOKEN)


def test_check_finds_the_token_of_the_up_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHLLM_ANALYTICS_QUERY_TOKEN", raising=False)
    assert CliSettings(data_dir=tmp_path).analytics_token() is None
    kept = load_or_create(tmp_path, ANALYTICS_QUERY_TOKEN)
    assert CliSettings(data_dir=tmp_path).analytics_token() == kept
    monkeypatch.setenv("WATCHLLM_ANALYTICS_QUERY_TOKEN", "e" * 40)
    assert CliSettings(data_dir=tmp_path).analytics_token() == "e" * 40


def test_a_missing_or_short_secret_names_its_variable() -> None:
    assert required_secret(SecretStr("s" * MIN_SECRET_CHARS), "V", "p") == "s" * MIN_SECRET_CHARS
    for value, state in ((None, "is not set"), (SecretStr(""), "is not set"),
                         (SecretStr("changeme"), "has 8 characters")):  # fmt: skip
        with pytest.raises(MissingSecret, match=f"^WATCHLLM_X {state}: it must be at least 32"):
            required_secret(value, "WATCHLLM_X", "what it guards")

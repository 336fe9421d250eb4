"""Key rotation against the real Postgres, read back through the gateway's own lookup
(``find_grant``): the old key works for its grace period, then never again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tests.conftest import unique
from watchllm_shared.accounts import (
    MAX_ROTATION_GRACE_SECONDS,
    AccountStore,
    ApiKey,
    CreatedKey,
    InvalidInputError,
    Plan,
)
from watchllm_shared.accounts.keys import hash_key

pytestmark = pytest.mark.integration


async def _works(store: AccountStore, key: str) -> bool:
    grant = await store.find_grant(hash_key(key))
    return grant is not None and grant.active


async def _keys(store: AccountStore, project: str) -> dict[str, ApiKey]:
    return {str(k.id): k for k in await store.list_keys(project)}


async def _project_with_key(store: AccountStore) -> tuple[str, CreatedKey]:
    project = unique("rot")
    await store.create_project(project, Plan.PRO)
    return project, await store.create_key(project, "app")


async def test_the_old_key_works_for_its_grace_then_stops(account_store: AccountStore) -> None:
    _, old = await _project_with_key(account_store)
    new = await account_store.rotate_key(old.key.id, grace_seconds=1)
    assert await _works(account_store, old.secret) and await _works(account_store, new.secret)
    await asyncio.sleep(1.2)
    assert not await _works(account_store, old.secret)
    assert await _works(account_store, new.secret)


async def test_a_key_that_stopped_cannot_be_revived_by_rotating_it_again(
    account_store: AccountStore,
) -> None:
    project, old = await _project_with_key(account_store)
    new = await account_store.rotate_key(old.key.id, grace_seconds=1)
    await asyncio.sleep(1.2)
    before = await _keys(account_store, project)
    with pytest.raises(InvalidInputError, match="already rotated.*rotate its replacement"):
        await account_store.rotate_key(old.key.id, grace_seconds=86_400)
    assert not await _works(account_store, old.secret)
    assert await _keys(account_store, project) == before  # no second successor, same expiry
    assert str(new.key.id) in before


async def test_a_key_in_its_grace_period_keeps_its_end(account_store: AccountStore) -> None:
    project, old = await _project_with_key(account_store)
    await account_store.rotate_key(old.key.id, grace_seconds=60)
    before = await _keys(account_store, project)
    with pytest.raises(InvalidInputError, match="already rotated"):
        await account_store.rotate_key(old.key.id, grace_seconds=3_600)
    after = await _keys(account_store, project)
    assert after == before
    expires = after[str(old.key.id)].expires_at
    assert expires is not None and (expires - datetime.now(UTC)).total_seconds() <= 60
    # It can still be revoked early, and its replacement rotated in turn.
    await account_store.revoke_key(old.key.id)
    assert not await _works(account_store, old.secret)


async def test_a_grace_beyond_thirty_days_is_refused_and_changes_nothing(
    account_store: AccountStore,
) -> None:
    project, old = await _project_with_key(account_store)
    before = await _keys(account_store, project)
    for grace in (MAX_ROTATION_GRACE_SECONDS + 1, 999_999_999_999, -1):
        with pytest.raises(InvalidInputError, match="between 0 and"):
            await account_store.rotate_key(old.key.id, grace_seconds=grace)
    assert await _keys(account_store, project) == before
    assert await _works(account_store, old.secret)

"""The hot-path Redis commands the limiter ask runs on (``PackedCommands``), against a
real Redis: replies as redis-py gives them, connections kept only while in step, a
stale connection replaced, a command cut off by its caller never answering the next, and
pipelines that raise their first error reply or, asked to, give each command's outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.support.processes import free_port
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration


@pytest.fixture
async def commands(redis: aioredis.Redis) -> AsyncIterator[PackedCommands]:
    packed = PackedCommands(redis, max_connections=4)
    yield packed
    await packed.aclose()


async def test_replies_match_redis_py(redis: aioredis.Redis, commands: PackedCommands) -> None:
    key = f"test:packed:{uuid.uuid4().hex}"
    assert await commands.call("HSET", key, "a", 1, "b", "two") == 2
    assert await commands.call("HGETALL", key) == await redis.hgetall(key)
    assert await commands.call("HMGET", key, "b", "c") == [b"two", None]
    assert await commands.call("GET", f"{key}:absent") is None
    await redis.delete(key)


async def test_an_error_reply_raises_and_keeps_the_connection(commands: PackedCommands) -> None:
    first = await commands.call("CLIENT", "ID")
    with pytest.raises(ResponseError, match="Function not found"):
        await commands.call("FCALL", "no_such_function_anywhere", 0)
    assert await commands.call("CLIENT", "ID") == first


async def test_a_connection_killed_since_its_last_use_is_replaced(
    redis: aioredis.Redis, commands: PackedCommands
) -> None:
    first = await commands.call("CLIENT", "ID")
    assert await redis.execute_command("CLIENT", "KILL", "ID", first) == 1
    second = await commands.call("CLIENT", "ID")  # no error reaches the caller
    assert isinstance(second, int) and second != first


async def test_a_command_cut_off_by_its_caller_never_answers_the_next(
    redis: aioredis.Redis, commands: PackedCommands
) -> None:
    queue, marker = f"test:packed:{uuid.uuid4().hex}", f"test:packed:{uuid.uuid4().hex}"
    await redis.set(marker, b"marker")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await commands.call("BLPOP", queue, 2)
    await redis.rpush(queue, b"late")  # whoever still waits on the cut-off BLPOP gets this
    assert await commands.call("GET", marker) == b"marker"
    await redis.delete(queue, marker)


async def test_commands_in_flight_are_bounded(commands: PackedCommands) -> None:
    ids = await asyncio.gather(*(commands.call("CLIENT", "ID") for _ in range(20)))
    assert 1 <= len(set(ids)) <= 4


async def test_redis_down_is_a_connection_error() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    commands = PackedCommands(client)
    with pytest.raises(RedisConnectionError):
        await commands.call("PING")
    with pytest.raises(RedisConnectionError):  # unknown what ran: never a list of outcomes
        await commands.call_many([("PING",), ("PING",)], raise_errors=False)
    await commands.aclose()
    await client.aclose()


async def test_a_pipeline_reads_every_reply_and_raises_its_first_error(
    redis: aioredis.Redis, commands: PackedCommands
) -> None:
    counter, text = f"test:packed:{uuid.uuid4().hex}", f"test:packed:{uuid.uuid4().hex}"
    await redis.set(text, b"not a number")
    assert await commands.call_many([("INCR", counter), ("INCR", counter)]) == [1, 2]
    with pytest.raises(ResponseError, match="not an integer"):
        await commands.call_many([("INCR", counter), ("INCR", text), ("INCR", counter)])
    assert await redis.get(counter) == b"4"  # the commands around the error did run
    connection = await commands.call("CLIENT", "ID")
    assert await commands.call("GET", counter) == b"4"  # in step: no leftover reply
    assert await commands.call("CLIENT", "ID") == connection
    await redis.delete(counter, text)


async def test_a_pipeline_can_give_each_commands_outcome_instead_of_raising(
    redis: aioredis.Redis, commands: PackedCommands
) -> None:
    counter, text = f"test:packed:{uuid.uuid4().hex}", f"test:packed:{uuid.uuid4().hex}"
    await redis.set(text, b"not a number")
    replies = await commands.call_many(
        [("INCR", counter), ("INCR", text), ("INCR", counter), ("GET", text)],
        raise_errors=False,
    )
    assert len(replies) == 4
    assert replies[0] == 1 and replies[2] == 2 and replies[3] == b"not a number"
    assert isinstance(replies[1], ResponseError) and "not an integer" in str(replies[1])
    assert await redis.get(counter) == b"2"  # the others ran, each once
    assert await commands.call_many([("INCR", counter)], raise_errors=False) == [3]
    connection = await commands.call("CLIENT", "ID")
    assert await commands.call("GET", counter) == b"3"  # in step: no leftover reply
    assert await commands.call("CLIENT", "ID") == connection
    await redis.delete(counter, text)

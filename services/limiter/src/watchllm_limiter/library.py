"""Loading the limiter's Redis Functions library (``library.lua``).

``FUNCTION LOAD REPLACE`` swaps the library atomically: a call in flight finishes on
the old code, the next runs on the new one, so an upgrade drops no request. The
loader never downgrades: if Redis already runs a newer version (a newer limiter
replica started first during a rolling deploy), it leaves it in place.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from watchllm_shared.contracts.limits import VERSION_FUNCTION

log = logging.getLogger(__name__)

_VERSION_LINE = re.compile(r"^local VERSION = (\d+)$", re.MULTILINE)
_INCLUDE_LINE = re.compile(r"^-- include ([a-z_]+\.lua)$", re.MULTILINE)


def library_source(version: int | None = None) -> str:
    """The library's Lua code; ``version`` replaces its number (for upgrade drills).
    ``library.lua`` names the files it includes (``-- include NAME.lua``: concurrency
    limits live apart in ``concurrency.lua``); one library, so one atomic check."""
    package = resources.files("watchllm_limiter")
    source = _INCLUDE_LINE.sub(
        lambda line: package.joinpath(line.group(1)).read_text(),
        package.joinpath("library.lua").read_text(),
    )
    if version is not None:
        source = _VERSION_LINE.sub(f"local VERSION = {version}", source)
    return source


def source_version(source: str) -> int:
    match = _VERSION_LINE.search(source)
    if match is None:
        raise ValueError("library.lua has no 'local VERSION = N' line")
    return int(match.group(1))


async def loaded_version(redis: aioredis.Redis) -> int | None:
    try:
        return int(await redis.fcall_ro(VERSION_FUNCTION, 0))
    except ResponseError as exc:
        if "Function not found" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


async def ensure_library(redis: aioredis.Redis, source: str | None = None) -> int:
    """Load the library unless Redis already runs this version or a newer one."""
    source = source or library_source()
    wanted = source_version(source)
    current = await loaded_version(redis)
    if current is not None and current >= wanted:
        return current
    await redis.function_load(source, replace=True)
    log.info("limiter library loaded: version %s (was %s)", wanted, current)
    return wanted

"""What a caller can make a gateway process hold, measured on a real process through
real sockets (issue 22, finding 1).

The attack: 200 connections, each with a random well-formed key, each sending all but
the last byte of a 4 MiB body. The gateway read every body before looking the key up,
with no deadline: 217 → 909 MiB (the Kubernetes limit is 512 Mi). The bound asserted
here is the product's: resident memory within 50 MiB of idle, the peak taken from the
kernel's high-water mark (``VmHWM``, reset before the attack), so no sampling can miss
it. Deadlines are set short only in the gateway that tests them; the memory tests run
with the defaults.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import Gateway, gateway_env
from tests.support.processes import ServiceProcess, start_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

MiB = 1024 * 1024
BODY = 4 * MiB
ATTACKERS = 200
BOUND_MIB = 50


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    """From here on ``VmHWM`` is the peak (Linux: clear_refs 5 resets the high-water mark)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def start(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path, **extra: str
) -> Iterator[Gateway]:
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(fake_provider.url, redis_url, database_url, stream,
                      WATCHLLM_MAX_BODY_BYTES=str(BODY), **extra)  # fmt: skip
    process = start_gateway(env, log_dir)
    yield Gateway(process, stream, process.url)
    process.stop()


@pytest.fixture(scope="module")
def gateway(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path,
    limiter_library: None,
) -> Iterator[Gateway]:  # fmt: skip
    """Default deadlines and budget: what an operator runs."""
    yield from start(fake_provider, redis_url, database_url, log_dir)


@pytest.fixture(scope="module")
def capped_gateway(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path,
    limiter_library: None,
) -> Iterator[Gateway]:  # fmt: skip
    yield from start(fake_provider, redis_url, database_url, log_dir,
                     WATCHLLM_GATEWAY_MAX_CONNECTIONS="40")  # fmt: skip


@pytest.fixture(scope="module")
def strict_gateway(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path,
    limiter_library: None,
) -> Iterator[Gateway]:  # fmt: skip
    """Short deadlines, and a budget of one 4 MiB body per project."""
    yield from start(
        fake_provider, redis_url, database_url, log_dir,
        WATCHLLM_HEADER_READ_TIMEOUT_SECONDS="1", WATCHLLM_BODY_READ_TIMEOUT_SECONDS="2",
        WATCHLLM_MAX_BODY_BYTES_IN_FLIGHT=str(4 * BODY),
    )  # fmt: skip


def port_of(gateway: Gateway) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


def head(key: str, length: int, path: str = "/v1/chat/completions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response with a content-length, or (0, b"") when the
    gateway closed or reset the connection instead."""
    try:
        status_line = await reader.readline()
        if not status_line:
            return 0, b""
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await reader.readexactly(length)
    except (ConnectionError, asyncio.IncompleteReadError):
        return 0, b""


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def send_upload(port: int, key: str, body: int = BODY) -> Connection:
    """Send all of a ``body``-byte upload but its last byte; the connection stays open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head(key, body))
    chunk = b"x" * (64 * 1024)
    sent = 0
    try:
        while sent < body - 1:
            part = chunk[: min(len(chunk), body - 1 - sent)]
            writer.write(part)
            sent += len(part)
            await writer.drain()
    except ConnectionError:
        pass
    return reader, writer


async def send_uploads(port: int, keys: list[str], body: int = BODY) -> list[Connection]:
    return list(await asyncio.gather(*(send_upload(port, key, body) for key in keys)))


async def answers(connections: list[Connection]) -> list[tuple[int, bytes]]:
    """Each connection's answer (bounded only to fail instead of hanging)."""
    replies = asyncio.gather(*(read_answer(reader) for reader, _ in connections))
    return list(await asyncio.wait_for(replies, 120))


def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()


def random_key() -> str:
    return "lgw_" + secrets.token_urlsafe(32)


def chat(url: str, key: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip


async def test_stalled_uploads_without_a_key_cost_no_memory(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    pid = gateway.process.process.pid
    for _ in range(20):  # warm: what serving costs anyway is in the idle figure
        assert (await asyncio.to_thread(chat, gateway.url, project_key[1])).status_code == 200
    idle = rss_mib(pid)
    reset_peak(pid)
    uploads = await send_uploads(port_of(gateway), [random_key() for _ in range(ATTACKERS)])
    try:
        # Every attacker holds its connection, its 4 MiB but one byte sent (the old
        # gateway had read them all by now): a key holder is still served meanwhile.
        peak, now = rss_mib(pid, "VmHWM"), rss_mib(pid)
        assert peak - idle <= BOUND_MIB, f"idle {idle:.0f} MiB, peak {peak:.0f} MiB under attack"
        assert now - idle <= BOUND_MIB, f"idle {idle:.0f} MiB, {now:.0f} MiB under attack"
        for _ in range(5):
            reply = await asyncio.to_thread(chat, gateway.url, project_key[1])
            assert reply.status_code == 200, reply.text
        replies = await answers(uploads)
    finally:
        close_all(uploads)
    # 401, or 503 when 200 lookups at once outlast the key store's 1 s deadline.
    assert {status for status, _ in replies} <= {401, 503}
    assert all(b"auth_unavailable" in body for status, body in replies if status == 503)


async def test_a_huge_head_is_refused_before_it_costs_memory(gateway: Gateway) -> None:
    """50 connections each sending 4 MiB of one header took the gateway from 83 to
    290 MiB: uvicorn reads a head of any size."""
    pid = gateway.process.process.pid
    idle = rss_mib(pid)
    reset_peak(pid)

    async def huge_head() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gateway))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nx-pad: ")
        try:
            for _ in range(64):
                writer.write(b"a" * (64 * 1024))
                await writer.drain()
        except ConnectionError:
            pass
        answer = await asyncio.wait_for(read_answer(reader), 120)
        writer.close()
        return answer

    answers = await asyncio.gather(*(huge_head() for _ in range(50)))
    peak = rss_mib(pid, "VmHWM")
    # 431, or a reset: closing a socket with unread bytes in it makes the kernel send RST.
    assert {status for status, _ in answers} <= {431, 0}
    assert peak - idle <= BOUND_MIB, f"idle {idle:.0f} MiB, peak {peak:.0f} MiB"


async def test_a_head_just_over_the_cap_gets_431(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gateway))
    writer.write(b"GET /livez HTTP/1.1\r\nhost: g\r\nx-pad: " + b"a" * (40 * 1024) + b"\r\n\r\n")
    status, _ = await asyncio.wait_for(read_answer(reader), 60)
    writer.close()
    assert status == 431


async def test_a_head_that_does_not_end_is_cut_at_its_deadline(strict_gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(strict_gateway))
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: g\r\n")  # and nothing more
    status, _ = await asyncio.wait_for(read_answer(reader), 60)  # 1 s in this gateway
    assert status == 408
    assert await reader.read() == b"", "the connection stays open"
    writer.close()


async def test_a_body_that_does_not_end_gets_408_in_the_callers_shape(
    strict_gateway: Gateway, project_key: tuple[str, str]
) -> None:
    upload = await send_upload(port_of(strict_gateway), project_key[1], 1000)
    ((status, body),) = await answers([upload])  # after 2 s in this gateway
    close_all([upload])
    assert status == 408
    assert orjson.loads(body)["error"]["code"] == "request_timeout"


async def test_a_project_cannot_hold_more_than_its_share_of_the_body_budget(
    strict_gateway: Gateway, project_key: tuple[str, str]
) -> None:
    """The budget (16 MiB here) lets one project read one 4 MiB body at a time; the
    others are refused at once with 503 (retried by the SDKs), and the one admitted
    gets 408 when its body does not end."""
    pid = strict_gateway.process.process.pid
    idle = rss_mib(pid)
    reset_peak(pid)
    uploads = await send_uploads(port_of(strict_gateway), [project_key[1]] * 30)
    replies = await answers(uploads)
    close_all(uploads)
    statuses = [status for status, _ in replies]
    assert set(statuses) <= {503, 408}, statuses
    assert 503 in statuses and 408 in statuses
    busy = next(orjson.loads(body) for status, body in replies if status == 503)
    assert busy["error"]["code"] == "server_busy"
    assert rss_mib(pid, "VmHWM") - idle <= BOUND_MIB


async def test_connections_past_the_cap_are_closed_unread(
    capped_gateway: Gateway, project_key: tuple[str, str]
) -> None:
    """40 connections in this gateway, each busy with a request whose body is not all
    there yet (the default 30 s deadline outlasts the test): the next 20 are closed
    before anything is read; the 40 are still served."""
    port = port_of(capped_gateway)
    request = head(project_key[1], 11, "/v1/embeddings") + b'{"mo'
    held = []
    for _ in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        held.append((reader, writer))
    try:
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            refused = await asyncio.wait_for(read_answer(reader), 60)
            writer.close()
            assert refused == (0, b""), "a connection past the cap was served"
        for reader, writer in held:
            writer.write(b'del":1}')  # the rest of the body: {"model":1}, no model name
            status, _ = await asyncio.wait_for(read_answer(reader), 60)
            assert status == 400, "a connection under the cap was dropped"
    finally:
        for _, writer in held:
            writer.close()
    deadline = time.monotonic() + 60  # once the gateway has seen them close
    while (
        reply := await asyncio.to_thread(chat_or_none, capped_gateway.url, project_key[1])
    ) is None:
        assert time.monotonic() < deadline, "no connection accepted after the others closed"
        await asyncio.sleep(0.1)
    assert reply.status_code == 200


def chat_or_none(url: str, key: str) -> httpx.Response | None:
    try:
        return chat(url, key)
    except httpx.TransportError:
        return None


async def test_a_large_request_that_came_in_one_read_does_not_count_against_the_next_head(
    gateway: Gateway,
) -> None:
    """A head and its whole 40 KiB body in one network read used to be counted as head
    bytes of the *next* request on the connection, which then got 431."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "x" * (40 * 1024)}]}).encode()  # fmt: skip
    for _ in range(3):  # a fresh connection each time: the first read is the whole request
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gateway))
        try:
            writer.write(head(random_key(), len(body)) + body)
            first, _ = await asyncio.wait_for(read_answer(reader), 60)
            assert first == 401
            writer.write(b"GET /livez HTTP/1.1\r\nhost: g\r\n\r\n")
            second, _ = await asyncio.wait_for(read_answer(reader), 60)
            assert second == 200
        finally:
            writer.close()

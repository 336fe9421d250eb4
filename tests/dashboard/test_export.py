"""Issue 20's export of the whole filtered request log: the Requests page's links, the
export route streaming every matching row (CSV, JSONL) page by page over real HTTP, and
the links it refuses. Two projects of the module's own with events at chosen times; the
route is served by uvicorn in this process with a page of 4 rows, so 25 rows are seven
reads (the old export stopped at a fixed number of rows: there is no bound any more).
The dashboard process serving the route itself is in ``test_process``."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import math
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.analytics.conftest import make_event
from tests.dashboard.conftest import (
    Accounts,
    Stack,
    Tenant,
    app,
    assert_clean,
    new_tenant,
    publish,
    wait_stored,
)
from watchllm_dashboard import export_link
from watchllm_dashboard.data import export
from watchllm_dashboard.data.analytics import AnalyticsReader, AnalyticsUnavailable
from watchllm_dashboard.export_route import ENDED, Exporter, routes
from watchllm_dashboard.main import shared_runtime
from watchllm_shared.accounts import AccountStore, SessionStore
from watchllm_shared.accounts.sessions import token_hash_of
from watchllm_shared.contracts import RequestStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
PAGE = 4
MATCHING = 25  # ok rows of project A in the window: 7 pages of 4
PASSWORD = "correct horse battery staple"


@dataclass
class Data:
    a: Tenant
    b: Tenant
    filters: dict[str, Any]  # project A's ok requests in the last three hours


@pytest.fixture(scope="module")
async def data(stack: Stack, account_store: AccountStore) -> Data:
    """Project A: 25 ok requests (six of them at one instant, so pages split ties), 4
    failed ones and 2 older than the window; project B: 10 ok ones at the same times."""
    a, b = await asyncio.gather(new_tenant(account_store, "export"),
                                new_tenant(account_store, "other"))  # fmt: skip
    times = [NOW - timedelta(minutes=5 * i) for i in range(19)] + [NOW - timedelta(hours=1)] * 6
    events = [make_event(a.project_id, t, key_id=a.key_id) for t in times]
    events += [make_event(a.project_id, NOW - timedelta(minutes=7 * i), key_id=a.key_id,
                          status=RequestStatus.UPSTREAM_ERROR, http_status=502)
               for i in range(4)]  # fmt: skip
    events += [make_event(a.project_id, NOW - timedelta(hours=5), key_id=a.key_id)
               for _ in range(2)]  # fmt: skip
    others = [make_event(b.project_id, t, key_id=b.key_id) for t in times[:10]]
    publish(stack, events + others)
    wait_stored(stack, a.project_id, len(events))
    wait_stored(stack, b.project_id, len(others))
    filters = {"project_id": a.project_id, "start": NOW - timedelta(hours=3), "end": NOW,
               "statuses": ["ok"]}  # fmt: skip
    return Data(a, b, filters)


class Recording:
    """The process's analytics reader, with each page read written down (and, from
    read ``fail_at`` on, analytics not answering, as when it stops mid-export)."""

    def __init__(self, reader: AnalyticsReader, fail_at: int | None = None) -> None:
        self._reader, self.fail_at = reader, fail_at
        self.reads: list[tuple[dict[str, Any], int]] = []  # parameters, rows answered

    def query(self, name: str, parameters: Mapping[str, Any]) -> pd.DataFrame:
        if self.fail_at is not None and len(self.reads) + 1 >= self.fail_at:
            raise AnalyticsUnavailable("analytics service answered 503")
        page = self._reader.query(name, parameters)
        self.reads.append((dict(parameters), len(page)))
        return page

    def close(self) -> None:
        pass


@dataclass
class Served:
    url: str
    exporter: Exporter
    reader: Recording = field(init=False)

    def use(self, reader: Recording, **changes: Any) -> Recording:
        self.exporter = replace(self.exporter, reader=reader, **changes)
        self.reader = reader
        return reader


@pytest.fixture(scope="module")
def served(data: Data) -> Iterator[Served]:
    """The export route on a real uvicorn server, reading pages of ``PAGE`` rows."""
    runtime = shared_runtime()
    state = Served("", replace(Exporter.of(runtime), page_rows=PAGE, clock=lambda: NOW))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(Starlette(routes=routes(lambda: state.exporter)),
                            access_log=False, log_level="warning", lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the export route's server did not start"
        time.sleep(0.01)
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield state
    server.should_exit = True
    thread.join(10)
    sock.close()


def link(served: Served, filters: dict[str, Any], kind: export.Kind, token: str,
         expires: datetime = NOW + export_link.LIFETIME) -> str:  # fmt: skip
    grant = export_link.Grant(kind, "requests-a", filters, token_hash_of(token), expires)
    return f"{served.url}/{export_link.url(export_link.sign(grant, served.exporter.secret))}"


def listed(filters: dict[str, Any]) -> pd.DataFrame:
    """The rows the page's own query lists for the filters, newest first."""
    return shared_runtime().analytics.query("project_request_log", {**filters, "limit": 500})


def wanted(filters: dict[str, Any]) -> list[str]:
    return [str(r) for r in listed(filters)["request_id"]]


async def test_the_whole_filtered_log_streams_once_in_order_a_page_at_a_time(
    data: Data, served: Served, tokens: dict[str, str]
) -> None:
    ids = wanted(data.filters)
    assert len(ids) == MATCHING and len(set(ids)) == MATCHING
    others = set(wanted({**data.filters, "project_id": data.b.project_id}))
    for kind in export.KINDS:
        reader = served.use(Recording(shared_runtime().analytics))
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.get(link(served, data.filters, kind, tokens["viewer"]))
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-disposition"].startswith(
            f'attachment; filename="requests-a.{kind}"'
        )
        if kind == "csv":
            rows = list(csv.DictReader(io.StringIO(reply.text)))
            assert reply.text.count("request_id") == 1  # one header, not one a page
        else:
            rows = [json.loads(line) for line in reply.text.splitlines()]
        assert [r["request_id"] for r in rows] == ids  # each once, newest first
        assert list(rows[0]) == list(listed(data.filters).columns)  # the log's columns
        assert not others & {r["request_id"] for r in rows}
        assert {r["status"] for r in rows} == {"ok"}
        assert all(r["occurred_at"].endswith("Z") for r in rows)
        # Read a page at a time: 7 reads of at most 4 rows, each after the last one's end.
        assert [n for _, n in reader.reads] == [4] * 6 + [1]
        assert reader.reads[0][0].get("before_at") is None
        assert all(params["limit"] == PAGE for params, _ in reader.reads)
        assert len(reader.reads) == math.ceil(MATCHING / PAGE)


def test_a_page_is_read_only_when_the_one_before_has_been_taken(data: Data, served: Served) -> None:
    reader = Recording(shared_runtime().analytics)
    chunks = export.encoded(export.pages(reader, data.filters, PAGE), "jsonl")
    first = next(chunks)
    assert len(reader.reads) == 1 and first.count(b"\n") == PAGE
    second = next(chunks)
    assert len(reader.reads) == 2 and second.count(b"\n") == PAGE
    assert sum(c.count(b"\n") for c in chunks) == MATCHING - 2 * PAGE


async def test_analytics_failing_mid_file_cuts_the_download_and_before_it_says_503(
    data: Data, served: Served, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    served.use(Recording(shared_runtime().analytics, fail_at=3))
    received = bytearray()
    async with httpx.AsyncClient(timeout=30) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # the body never ends properly
            async with client.stream("GET", link(served, data.filters, "csv",
                                                 tokens["viewer"])) as reply:  # fmt: skip
                assert reply.status_code == 200
                async for chunk in reply.aiter_bytes():
                    received += chunk
        assert received.count(b"\n") <= 1 + 2 * PAGE  # the header and two pages at most
        assert f"of project {data.a.project_id} cut after" in caplog.text
        served.use(Recording(shared_runtime().analytics, fail_at=1))
        reply = await client.get(link(served, data.filters, "csv", tokens["viewer"]))
    assert reply.status_code == 503
    assert reply.text.startswith("Analytics cannot answer right now")


def _tampered(url: str, change: dict[str, Any]) -> str:
    """The link with its grant changed and the signature kept."""
    base, token = url.split("?t=")
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["f"].update(change)
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{base}?t={forged}.{mac}"


async def test_forged_changed_expired_and_signed_out_links_are_refused(
    data: Data, served: Served, tokens: dict[str, str], account_store: AccountStore,
    accounts: Accounts,
) -> None:  # fmt: skip
    reader = served.use(Recording(shared_runtime().analytics))
    good = link(served, data.filters, "csv", tokens["viewer"])
    other_secret = replace(served.exporter, secret=b"x" * 32)
    sessions = SessionStore(account_store.pool)
    ended = (await sessions.sign_in(accounts.viewer, PASSWORD)).token
    await sessions.sign_out(ended)
    refused = {
        "another project": _tampered(good, {"project_id": str(data.b.project_id)}),
        "wider filters": _tampered(good, {"statuses": []}),
        "garbage": f"{served.url}/export/requests?t=not-a-link",
        "none": f"{served.url}/export/requests",
        "expired": link(served, data.filters, "csv", tokens["viewer"], NOW),
        "signed out": link(served, data.filters, "csv", ended),
    }
    async with httpx.AsyncClient(timeout=30) as client:
        answers = {why: await client.get(url) for why, url in refused.items()}
        served.exporter = other_secret  # a link made under another secret (or a forger's)
        answers["another secret"] = await client.get(good)
    for why, reply in answers.items():
        assert reply.status_code == 403, (why, reply.text)
        assert data.b.project_id.hex not in reply.text
    assert "not one this dashboard made, or was changed" in answers["another project"].text
    assert "has expired" in answers["expired"].text
    assert answers["signed out"].text == f"{ENDED[0].upper()}{ENDED[1:]}.\n"
    assert reader.reads == []  # nothing was read for any of them


async def test_the_requests_page_links_to_its_filters_for_this_session(
    data: Data, tokens: dict[str, str], clock: Any
) -> None:
    clock(NOW)
    at = app(tokens["viewer"], "Requests", data.a.project)
    at.session_state["requests_status"] = ["ok"]
    at.session_state["range"] = "Custom"
    at.session_state["range_from"] = (NOW - timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")
    at.session_state["range_to"] = NOW.strftime("%Y-%m-%d %H:%M")
    at = await asyncio.to_thread(at.run)
    assert_clean(at)
    assert f"An export holds all {MATCHING} matching requests" in " ".join(
        c.value for c in at.caption
    )
    runtime = shared_runtime()
    for kind in export.KINDS:
        url = at.link_button(key=f"requests_export_{kind}").proto.url
        assert url.startswith("export/requests?t=")
        grant = export_link.verify(parse_qs(urlsplit(url).query)["t"][0], runtime.export_secret,
                                   NOW)  # fmt: skip
        assert grant.kind == kind and grant.session == token_hash_of(tokens["viewer"])
        assert grant.filters["project_id"] == data.a.project_id
        assert grant.filters["statuses"] == ["ok"]
        assert (grant.filters["start"], grant.filters["end"]) == (NOW - timedelta(hours=3), NOW)
        assert grant.expires == NOW + export_link.LIFETIME
        assert grant.stem.startswith("requests-export-")


def test_properties_are_one_json_object_a_csv_cell_and_an_object_in_json_lines() -> None:
    frame = pd.DataFrame({
        "occurred_at": pd.to_datetime(["2026-03-01T12:00:00.123456Z"], utc=True),
        "request_id": ["r1"], "end_user": ["u1"], "properties": [{"team": "a", "app": "é"}],
    })  # fmt: skip
    text = b"".join(export.encoded([frame], "csv")).decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["occurred_at"] == "2026-03-01T12:00:00.123Z" and row["end_user"] == "u1"
    assert json.loads(row["properties"]) == {"team": "a", "app": "é"}
    line = json.loads(b"".join(export.encoded([frame], "jsonl")))
    assert line["properties"] == {"team": "a", "app": "é"} and line["request_id"] == "r1"

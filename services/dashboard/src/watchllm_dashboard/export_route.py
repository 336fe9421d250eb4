"""``GET /export/requests?t=<link>``: the whole filtered request log as a streamed file.

Why a route of the dashboard's own: Streamlit's download button hands the browser one
finished file, held in memory (the export used to stop at 100,000 rows for that), and
the analytics service, which could stream, is internal (compose, k8s and ``watchllm
up`` publish only the gateway and the dashboard; the browser cannot reach it). Streamlit
1.67 serves the app from Starlette and takes routes of our own (``st.App(routes=…)``,
``server.py``): this one runs in the dashboard process, reads the log from analytics
page by page (``data.export.pages``) and sends each page on as it comes
(``StreamingResponse``), the next page read only once the connection has taken the one
before. A download of millions of rows holds one page (``WATCHLLM_DASHBOARD_EXPORT_PAGE_ROWS``).

Who may download what: the link is the authority (``export_link``), made by the
Requests page for the signed-in user (admin or viewer: every signed-in user may read
and export every project's log, as on the page) and signed over the project, the
filters, the kind, the session and an expiry. Refusals are 403 with the reason in plain
text: a link changed or not made here, expired, or whose session has ended. Postgres or
analytics down before the first byte: 503. Analytics failing mid-file: the connection is cut
without the end of the chunked body, so the browser marks the download failed instead
of keeping a file that looks whole (and the dashboard logs how far it got).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from watchllm_dashboard.data import export
from watchllm_dashboard.data.analytics import AnalyticsReader, AnalyticsUnavailable
from watchllm_dashboard.export_link import PATH, Grant, LinkRefused, verify
from watchllm_dashboard.main import STORE_ERRORS
from watchllm_dashboard.runtime import Runtime
from watchllm_shared.accounts import User

log = logging.getLogger(__name__)
ENDED = (
    "the session that made this export link has ended (signed out or expired): sign in,"
    " open the Requests page and export again"
)


@dataclass(frozen=True)
class Exporter:
    """What the route needs of the process (``of``: the dashboard's runtime)."""

    reader: AnalyticsReader
    secret: bytes
    page_rows: int
    live_user: Callable[[bytes], User | None]  # by the session token's SHA-256
    clock: Callable[[], datetime]

    @classmethod
    def of(cls, runtime: Runtime) -> Exporter:
        return cls(
            runtime.analytics,
            runtime.export_secret,
            runtime.settings.dashboard_export_page_rows,
            lambda digest: runtime.run(runtime.sessions.live_user(digest)),
            runtime.clock,
        )


def _refused(reason: str, status: int = 403) -> Response:
    return PlainTextResponse(f"{reason[0].upper()}{reason[1:]}.\n", status_code=status,
                             headers={"cache-control": "no-store"})  # fmt: skip


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _sent(body: Iterator[bytes], grant: Grant, user: User) -> Iterator[bytes]:
    """``body``, with what was sent logged at the end, or how far it got when it broke."""
    project, sent = grant.filters["project_id"], 0
    try:
        for chunk in body:
            yield chunk
            sent += len(chunk)
    except Exception as exc:  # the connection is cut (uvicorn): say where, then go on
        log.warning("export for %s of project %s cut after %d bytes: %s: %s",
                    user.username, project, sent, type(exc).__name__, exc)  # fmt: skip
        raise
    log.info("export for %s of project %s: %d bytes of %s", user.username, project, sent,
             grant.kind)  # fmt: skip


def routes(exporter: Callable[[], Exporter]) -> list[Route]:
    """The export route; ``exporter`` is asked once a request (the runtime opens lazily)."""

    async def download(request: Request) -> Response:
        try:
            source = await run_in_threadpool(exporter)
            grant = verify(request.query_params.get("t", ""), source.secret, source.clock())
            user = await run_in_threadpool(source.live_user, grant.session)
        except LinkRefused as exc:
            return _refused(str(exc))
        except STORE_ERRORS as exc:
            return _refused(f"the dashboard cannot reach Postgres right now: {exc}", 503)
        if user is None:
            return _refused(ENDED)
        frames = export.pages(source.reader, grant.filters, source.page_rows)
        try:  # the first page before the status line: analytics down is a clear 503
            first = await run_in_threadpool(next, frames, None)
        except AnalyticsUnavailable as exc:
            return _refused(f"analytics cannot answer right now: {exc}", 503)
        pages = chain([] if first is None else [first], frames)
        return StreamingResponse(
            _sent(export.encoded(pages, grant.kind), grant, user),
            media_type=export.MIME[grant.kind],
            headers={
                "content-disposition": _disposition(export.file_name(grant.stem, grant.kind)),
                "cache-control": "no-store",
                "x-content-type-options": "nosniff",
            },
        )

    return [Route(PATH, download, methods=["GET"])]

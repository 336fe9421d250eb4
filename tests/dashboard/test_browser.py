"""A real browser (Debian's chromium, driven by Playwright) against the dashboard process
with data in it: sign in, visit every page, fail on any error shown, and save a
screenshot of each page (into the test's temporary folder; under docs/screenshots/, which
the README shows, with WATCHLLM_REFRESH_SCREENSHOTS=1). A custom time
range and a filter travel in the page's address to another session, and the filtered
log downloads through the page's export link. Then a project
whose key and model names are image and link Markdown: on every page nothing is fetched
from them (a loopback receiver records every request) and no link is drawn.

Chromium comes from Debian (`make browser`, a prerequisite of `make test`); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from tests.dashboard.conftest import PASSWORD, Accounts, Stack, Tenant, Traffic
from tests.dashboard.test_tenant_text import markup_tenant
from tests.support.processes import ServiceProcess, free_port, start_process
from watchllm_dashboard.views.sidebar import PAGES
from watchllm_shared.accounts import AccountStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DRAWN = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
    .every(chart => chart.querySelector("canvas, svg"))"""
PROBLEMS = ('[data-testid="stException"], [data-testid="stAlertContentError"],'
            ' [data-testid="stAlertContentWarning"]')  # fmt: skip


@pytest.fixture(scope="module")
def dashboard(dashboard_env: dict[str, str], log_dir: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**dashboard_env, "WATCHLLM_DASHBOARD_PORT": str(port)}
    process = start_process("watchllm_dashboard", [], env, f"{base}/_stcore/health", base,
                            log_dir / f"dashboard-{port}.log", timeout=90)  # fmt: skip
    yield process
    process.stop()


def slug(page: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", page.lower()).strip("-")


def settle(page: Page) -> None:
    """Wait until Streamlit finished the run and charts have drawn."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=30_000)
    page.wait_for_function(DRAWN, timeout=30_000)  # vega draws after the run
    page.wait_for_timeout(500)


def sign_in(
    page: Page, url: str, username: str, project: str | None, landing: str = "Overview"
) -> None:
    """Open ``url``, sign in, land on ``landing``, then choose ``project`` (if given)."""
    page.goto(url, timeout=60_000)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=landing, exact=True)).to_be_visible(timeout=30_000)
    if project is not None:
        choose(page, sidebar(page, "Project"), project)
        expect(page.get_by_text(f"Project {project}")).to_be_visible(timeout=30_000)


def sidebar(page: Page, label: str) -> Locator:
    """The sidebar's selectbox labelled ``label``."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]')
    return box.filter(has=page.get_by_text(label, exact=True))


def choose(page: Page, chooser: Locator, option: str) -> None:
    chooser.click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")


def visit(page: Page, name: str) -> None:
    radio = page.locator('[data-testid="stSidebar"] [data-testid="stRadio"]')
    radio.get_by_text(name, exact=True).click()
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(timeout=30_000)
    settle(page)


def test_sign_in_and_every_page_in_a_real_browser(
    dashboard: ServiceProcess, accounts: Accounts, traffic: Traffic, tmp_path: Path
) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make browser`"
    refresh = os.environ.get("WATCHLLM_REFRESH_SCREENSHOTS") == "1"  # a test run leaves
    screenshots = DOCS_SCREENSHOTS if refresh else tmp_path  # the checkout as it was
    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2000})
            sign_in(page, dashboard.url, accounts.admin, accounts.project)
            for name in PAGES:
                visit(page, name)
                problems = page.locator(PROBLEMS)
                assert problems.count() == 0, f"{name}: {problems.all_inner_texts()}"
                page.screenshot(path=str(screenshots / f"{slug(name)}.png"), full_page=True)
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        finally:
            browser.close()
    assert {p.stem for p in screenshots.glob("*.png")} >= {slug(p) for p in PAGES}


def test_a_custom_range_and_filters_travel_in_a_link(
    dashboard: ServiceProcess, accounts: Accounts, traffic: Traffic
) -> None:
    """Issue 20: a custom range beside the presets, the filtered log exported (the browser
    downloads every matching row), and a copied link that opens the same view in another
    browser session, after its sign-in."""
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(hours=20)).strftime("%Y-%m-%d %H:%M"),
        now.strftime("%Y-%m-%d %H:%M"),
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2000})
            sign_in(page, dashboard.url, accounts.viewer, accounts.project)
            visit(page, "Requests")
            choose(page, sidebar(page, "Time range"), "Custom")
            for label, value in (("From (UTC)", start), ("To (UTC)", end)):
                field = page.get_by_label(label, exact=True)
                field.fill(value)
                field.press("Enter")
                settle(page)
            expect(page.get_by_text(f"Custom: {start} →").first).to_be_visible(timeout=30_000)
            status = page.locator('[data-testid="stMultiSelect"]').first
            choose(page, status, "4xx")
            expect(page).to_have_url(re.compile(r"range=custom.*status=4xx"), timeout=30_000)
            settle(page)
            caption = page.get_by_text(re.compile(r"requests match · page 1 of"))
            expect(caption).to_contain_text("Custom", timeout=30_000)
            counted, address = caption.inner_text(), page.url
            assert page.locator(PROBLEMS).count() == 0
            # The export: every matching request, downloaded by the browser from the link.
            export = page.locator("a", has_text="Export CSV")
            export.evaluate("a => a.removeAttribute('target')")  # the download, not a tab
            with page.expect_download(timeout=30_000) as downloaded:
                export.click()
            assert downloaded.value.suggested_filename.startswith("requests-")
            lines = Path(downloaded.value.path()).read_text().splitlines()
            assert len(lines) - 1 == int(counted.split(" requests match")[0].replace(",", ""))
            shared = browser.new_context(viewport={"width": 1440, "height": 2000}).new_page()
            sign_in(shared, address, accounts.admin, None, landing="Requests")
            settle(shared)
            expect(shared.get_by_text(counted, exact=True)).to_be_visible(timeout=30_000)
            expect(shared.get_by_label("From (UTC)", exact=True)).to_have_value(start)
            assert shared.locator(PROBLEMS).count() == 0
            assert shared.url == address
        finally:
            browser.close()


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[str]]]:
    """A loopback HTTP server that records the path of every request it gets."""
    fetched: list[str] = []

    class Record(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], fetched
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def marked_up(
    account_store: AccountStore, stack: Stack, receiver: tuple[int, list[str]]
) -> Tenant:
    tenant, _ = await markup_tenant(account_store, stack, receiver[0])
    return tenant


def test_tenant_markdown_fetches_nothing_and_links_nowhere(
    dashboard: ServiceProcess,
    accounts: Accounts,
    marked_up: Tenant,
    receiver: tuple[int, list[str]],
) -> None:
    """A model named ``![t](http://127.0.0.1:PORT/model.png)`` made every viewer's browser
    fetch it (key names too), and ``[click](http://evil…)`` drew a link (issue 22, 8).
    As an admin: a viewer sees the same pages, but the key chooser disabled."""
    port, fetched = receiver
    planted = f'img[src*="127.0.0.1:{port}"], a[href*="evil.example"]'
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2000})
            sign_in(page, dashboard.url, accounts.admin, marked_up.project)
            for name in PAGES:
                visit(page, name)
                drawn = page.locator(planted).evaluate_all("all => all.map(e => e.outerHTML)")
                assert drawn == [], name
                if name == "Overview":  # the unpriced-model warning names it, as text
                    words = f"127.0.0.1:{port}/model.png) [click]"
                    expect(page.get_by_text(words).first).to_be_visible()
                if name == "Projects & settings":  # options are text too: open the chooser
                    label = page.get_by_text("Key", exact=True)
                    page.locator('[data-testid="stSelectbox"]', has=label).click()
                    words = f"127.0.0.1:{port}/key.png) [click]"
                    expect(page.get_by_role("option").filter(has_text=words)).to_be_visible()
                    drawn = page.locator(planted).evaluate_all("all => all.map(e => e.outerHTML)")
                    assert drawn == [], "the key chooser's options"
                    page.keyboard.press("Escape")
        finally:
            browser.close()
    assert fetched == []

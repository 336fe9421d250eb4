"""A real browser (Debian's chromium, driven by Playwright) against the dashboard process
with data in it: sign in, visit every page, fail on any error shown, and save a
screenshot of each page under docs/screenshots/ (the README shows them).

Chromium comes from Debian (`make browser`, a prerequisite of `make test`); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.dashboard.conftest import PASSWORD, Accounts, Traffic
from tests.support.processes import ServiceProcess, free_port, start_process
from watchllm_dashboard.views.sidebar import PAGES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
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


def test_sign_in_and_every_page_in_a_real_browser(
    dashboard: ServiceProcess, accounts: Accounts, traffic: Traffic
) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make browser`"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2000})
            page.goto(dashboard.url, timeout=60_000)
            page.get_by_label("Username", exact=True).fill(accounts.admin)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible(
                timeout=30_000
            )
            project = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
            project.click()
            page.keyboard.type(accounts.project)
            page.keyboard.press("Enter")
            expect(page.get_by_text(f"Project {accounts.project}")).to_be_visible(timeout=30_000)
            for name in PAGES:
                radio = page.locator('[data-testid="stSidebar"] [data-testid="stRadio"]')
                radio.get_by_text(name, exact=True).click()
                expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(
                    timeout=30_000
                )
                settle(page)
                problems = page.locator(PROBLEMS)
                assert problems.count() == 0, f"{name}: {problems.all_inner_texts()}"
                page.screenshot(path=str(SCREENSHOTS / f"{slug(name)}.png"), full_page=True)
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        finally:
            browser.close()
    assert {p.stem for p in SCREENSHOTS.glob("*.png")} >= {slug(p) for p in PAGES}

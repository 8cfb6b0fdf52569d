"""End to end in a real headless Chromium (Debian's ``chromium``, driven by Playwright; Playwright never downloads a
browser here): sign in, see a held item with its scores and reason codes, see a new one arrive live, approve with
the keyboard, watch it leave the queue, and download the released asset as the app."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

pytestmark = pytest.mark.browser

WAIT_MS = 15_000  # generous upper bounds for the page to react; nothing asserts on how fast it does


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("MEDIAGATE_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"MEDIAGATE_REQUIRE_CHROMIUM=1 but {reason}")
    pytest.skip(f"{reason}; the console's HTTP tests still run")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium, launched headless through Playwright's ``executable_path``."""
    executable = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if executable is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_sign_in_triage_and_release_in_a_real_browser(
    chromium: Any, console_gateway: Any, make_held: Any, serve: Any
) -> None:
    gw = console_gateway
    base = serve(gw)
    first = make_held(prompt="a lighthouse at dusk")
    reviewer_key = gw.key("careful", "reviewer")["Authorization"].removeprefix("Bearer ")

    context = chromium.new_context(base_url=base)
    page = context.new_page()
    problems: list[str] = []  # script errors and CSP violations would show up here
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(f"{msg.text} {msg.location}") if msg.type == "error" else None)
    try:
        page.goto("/console")
        assert page.url.endswith("/console/login?m=signin")
        page.fill("#key", reviewer_key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/console", timeout=WAIT_MS)

        card = page.locator(f"#item-{first['review']['id']}")
        card.wait_for(timeout=WAIT_MS)
        assert "policy.force_review" in card.inner_text()
        assert "a lighthouse at dusk" in card.inner_text()
        assert card.locator("table.scores th", has_text="perceptual").count() == 1
        assert card.locator("img").evaluate("img => img.complete && img.naturalWidth") == 128
        assert "selected" in (card.get_attribute("class") or "")  # the first item is selected for the keyboard

        # A new held item appears without a reload.
        second = make_held(prompt="a red bicycle")
        page.locator(f"#item-{second['review']['id']}").wait_for(timeout=WAIT_MS)
        assert page.inner_text("#count") == "2"

        # Keyboard triage: j / k move the selection, "?" shows the help, "a" arms approval and focuses the reason,
        # Enter approves.
        later = page.locator(f"#item-{second['review']['id']}")
        page.keyboard.press("j")
        assert "selected" in (later.get_attribute("class") or "")
        assert "selected" not in (card.get_attribute("class") or "")
        page.keyboard.press("k")
        assert "selected" in (card.get_attribute("class") or "")
        page.keyboard.press("?")
        assert page.locator("#help").is_visible()
        page.keyboard.press("Escape")
        page.keyboard.press("a")
        reason = card.locator("input.reason")
        assert reason.evaluate("el => el === document.activeElement") and reason.input_value() == ""
        page.keyboard.type("colours checked against the brand kit")
        page.keyboard.press("Enter")
        card.wait_for(state="detached", timeout=WAIT_MS)
        assert "Approved " + first["review"]["id"] in page.inner_text("#flash")
        assert page.inner_text("#count") == "1"

        # The app now downloads the asset over HTTP; the other item is still held for it.
        app = gw.key("careful", "app")
        released = httpx.get(f"{base}/v1/assets/{first['assets'][0]['id']}", headers=app)
        assert released.status_code == 200 and released.headers["x-mediagate-status"] == "released"
        held = httpx.get(f"{base}/v1/assets/{second['assets'][0]['id']}", headers=app)
        assert held.status_code == 403

        # Reject the other one with the mouse; an empty reason is refused in the page first.
        other = later
        other.locator("button.reject").click()
        assert other.locator("input.reason").evaluate("el => !el.validity.valid")  # the browser's required check
        other.locator("input.reason").fill("off brand")
        other.locator("button.reject").click()
        other.wait_for(state="detached", timeout=WAIT_MS)
        page.locator("#empty").wait_for(state="visible", timeout=WAIT_MS)
        assert problems == []
    finally:
        context.close()
    kinds = [e["kind"] for e in gw.client.get("/v1/audit/entries", headers=gw.key("careful", "auditor"),
                                              params={"limit": 500}).json()["data"]]
    assert kinds.count("review.approved") == 1 and kinds.count("review.rejected") == 1

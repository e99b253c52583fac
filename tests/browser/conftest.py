"""What the Chromium tests share: the browser, screenshots, signing in and asking in the chat.

The app they drive is the ``app`` fixture of tests/conftest.py (one `chainlit run app.py` per module).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHOTS_ON
from tests.fixtures.appserver import PASSWORDS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (never `playwright install`)."""
    import shutil

    from playwright.sync_api import expect, sync_playwright

    # expect()'s 5 s default is too short on a loaded 2-core machine: the single-user sign-in alone
    # is a round trip through /login before the chat opens.
    expect.set_options(timeout=30_000)

    if not shutil.which(CHROMIUM):
        pytest.fail("Debian chromium is missing: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def facts() -> dict:
    """What one test of the module learns and the next ones use (thread ids, hashes)."""
    return {}


@pytest.fixture
def shots(request, tmp_path):
    """shot(page, name): a full-page screenshot ``name``.png.

    By default in the test's temp dir (look at them while developing; ``shots.dir``). A module whose
    screenshots are published marks where they go, ``pytest.mark.shots(folder)``: there when KBCHAT_SHOTS
    is set, none taken otherwise.
    """
    mark = request.node.get_closest_marker("shots")
    folder = tmp_path if mark is None else Path(mark.args[0]) if SHOTS_ON else None

    def shot(page, name: str) -> None:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    shot.dir = folder
    return shot


def login(url: str, name: str, password: str | None = None) -> httpx.Client:
    """An HTTP client signed in as ``name`` (password: PASSWORDS) through /login."""
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("/login", data={"username": name, "password": password or PASSWORDS[name]})
    assert r.status_code == 200, (name, r.status_code, r.text)
    return c


def browser_login(browser, url: str, name: str, shots=None):
    """A new browser context signed in as ``name`` on the login page; (context, page) once the chat is open."""
    from playwright.sync_api import expect

    ctx = browser.new_context(base_url=url, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    expect(page.locator("#email")).to_be_visible()
    if shots:
        shots(page, "login-page")
    page.locator("#email").fill(name)
    page.locator("#password").fill(PASSWORDS[name])
    page.locator("button[type=submit]").click()
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    return ctx, page


def ask(page, text: str) -> None:
    """Type ``text`` into the chat and send it."""
    page.locator("#chat-input").fill(text)
    page.locator("#chat-submit").click()


def wait_answer(page, n_before: int):
    """The next answer with sources (there were ``n_before``), once it is shown."""
    from playwright.sync_api import expect

    answers = page.locator("[data-step-type='assistant_message']").filter(has_text=re.compile("Source 1", re.I))
    expect(answers).to_have_count(n_before + 1, timeout=90_000)
    return answers.last

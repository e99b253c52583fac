"""LLM failures in the real UI (issue 6 §2): each gives one line plus a search-only answer with Source
pills, and the next question works when the LLM is back. One `chainlit run` server, headless Chromium."""

from __future__ import annotations

import re

import pytest

pytestmark = [
    pytest.mark.browser, pytest.mark.slow, pytest.mark.stub(slow_seconds=6.0),
    pytest.mark.app(pdfs={"fleet-manual.pdf": ["The fleet manual says every truck is inspected every 30 days.",
                                               "The fleet has 48 trucks and 6 vans."]},
                    env={"KBCHAT_LLM_TIMEOUT": "2"}),  # a small timeout so the "slow" stub times out quickly
]


# mode -> (what the one line must say, whether a partial answer may precede it)
CASES = [
    ("refused", r"could not be reached"),
    ("401", r"refused the API key \(401\)"),
    ("404", r"is not served by .* \(404\)"),
    ("slow", r"did not answer within|stalled"),
    ("cut", r"cut off mid-answer"),
]


def test_llm_failures_give_one_line_and_search_only_answer(browser, app, stub, tmp_path):
    from playwright.sync_api import expect

    ctx = browser.new_context(base_url=app.url, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    answers = page.locator("[data-step-type='assistant_message']")
    seen = {}
    try:
        for mode, line in CASES:
            if mode == "refused":
                stub.stop()
            else:
                stub.mode = mode
            page.locator("#chat-input").fill(f"How often is a truck inspected? ({mode})")
            page.locator("#chat-submit").click()
            ans = answers.filter(has_text=re.compile(line)).last
            expect(ans).to_be_visible(timeout=60_000)
            text = ans.inner_text()
            assert "Traceback" not in text
            warn = [ln for ln in text.splitlines() if "⚠️" in ln]
            assert len(warn) == 1, text  # one line says what happened
            assert re.search(r"search-only answer|may be incomplete", warn[0]), warn[0]
            assert "fleet-manual.pdf" in text  # the best passages, with their citation
            expect(ans.locator("a.element-link").first).to_be_visible()
            seen[mode] = warn[0]
            page.screenshot(path=str(tmp_path / f"llm-{mode}.png"), full_page=True)
            if mode == "refused":
                stub.start()
            # wait until the server is done with this question before the next one
            expect(page.locator("#stop-button")).to_have_count(0, timeout=60_000)
        stub.mode = "ok"
        page.locator("#chat-input").fill("How many trucks does the fleet have?")
        page.locator("#chat-submit").click()
        ok = answers.filter(has_text="According to").last
        expect(ok).to_be_visible(timeout=60_000)
        expect(ok).to_contain_text("fleet-manual.pdf")
    finally:
        stub.mode = "ok"
        if stub._server is None:
            stub.start()
        ctx.close()
    for mode, text in seen.items():
        print(f"{mode}: {text}")

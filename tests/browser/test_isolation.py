"""Isolation (issue 6 §4): two browser sessions each upload a different PDF; neither's questions retrieve
the other's passages and neither can open the other's file, also not by requesting its URL directly."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.conftest import ask
from tests.fixtures import hostile_pdfs as H

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # the app: single-user, no knowledge


def _open(browser, app):
    from playwright.sync_api import expect

    ctx = browser.new_context(base_url=app.url, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    uploads = []

    def on_response(resp):
        if resp.request.method == "POST" and "/project/file" in resp.url and resp.ok:
            sid = parse_qs(urlparse(resp.url).query)["session_id"][0]
            uploads.append((resp.json()["id"], sid))

    page.on("response", on_response)
    page.goto("/")
    try:
        expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    except AssertionError:  # the single-user sign-in (a round trip through /login) can stall once under load
        page.goto("/")
        expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    return ctx, page, uploads


def test_two_sessions_see_and_open_only_their_own_files(browser, app, stub, tmp_path):
    from playwright.sync_api import expect

    stub.mode = "ok"
    alpha = H.text_pdf(tmp_path / "alpha-plan.pdf", ["The project code word is ALPHAKILO. The vault is on floor 3."])
    bravo = H.text_pdf(tmp_path / "bravo-plan.pdf", ["The project code word is BRAVOLIMA. The vault is on floor 9."])
    a_ctx, a, a_up = _open(browser, app)
    b_ctx, b, b_up = _open(browser, app)
    try:
        for page, pdf in ((a, alpha), (b, bravo)):
            page.locator("#upload-button-input").set_input_files(str(pdf))
            expect(page.locator("#attachments")).to_contain_text(pdf.name[:8])
            ask(page, "What is the project code word?")
        for page, own, other, word, other_word in ((a, "alpha-plan.pdf", "bravo-plan.pdf", "ALPHAKILO", "BRAVOLIMA"),
                                                   (b, "bravo-plan.pdf", "alpha-plan.pdf", "BRAVOLIMA", "ALPHAKILO")):
            ans = page.locator("[data-step-type='assistant_message']").filter(has_text="According to").last
            expect(ans).to_contain_text(word, timeout=120_000)
            ask(page, "On which floor is the vault? Is the code word BRAVOLIMA or ALPHAKILO?")
            expect(page.locator("[data-step-type='assistant_message']").filter(has_text="According to")
                   ).to_have_count(2, timeout=60_000)
            text = "\n".join(page.locator("[data-step-type='assistant_message']").all_inner_texts())
            assert own in text and other not in text, text
            sources = re.findall(r"—\s*([^,\n—]+?\.pdf), page", text)
            assert sources and set(sources) == {own}, (sources, text)
            # the passages quoted under the answers are only this session's
            quoted = re.findall(r"“([^”]*)”", text)
            assert quoted and not any(other_word in q for q in quoted), quoted
        assert len(a_up) == 1 and len(b_up) == 1
        (a_key, a_sid), (b_key, b_sid) = a_up[0], b_up[0]
        assert a_sid != b_sid
        # each owner can open its own file
        r = a.request.get(f"/project/file/{a_key}?session_id={a_sid}")
        assert r.status == 200 and r.body()[:5] == b"%PDF-"
        r = b.request.get(f"/project/file/{b_key}?session_id={b_sid}")
        assert r.status == 200 and r.body()[:5] == b"%PDF-"
        # the other session cannot: not with its own session id, not even with the owner's full URL
        for page, key, sid in ((b, a_key, b_sid), (b, a_key, a_sid), (a, b_key, a_sid), (a, b_key, b_sid)):
            r = page.request.get(f"/project/file/{key}?session_id={sid}")
            assert r.status != 200 and b"%PDF-" not in r.body(), (key, sid, r.status)
        # nor upload into the other session
        r = b.request.post(f"/project/file?session_id={a_sid}",
                           multipart={"file": {"name": "x.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4"}})
        assert r.status != 200, r.status
        a.screenshot(path=str(tmp_path / "alpha.png"), full_page=True)
        b.screenshot(path=str(tmp_path / "bravo.png"), full_page=True)
    finally:
        a_ctx.close()
        b_ctx.close()

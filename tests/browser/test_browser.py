"""The real app in headless Debian Chromium (Playwright, executable_path), LLM = StubLLM on loopback."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.browser.conftest import ask
from tests.conftest import CORPUS, make_pdf

A100 = CORPUS / "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
T400 = CORPUS / "nvidia-t400-datasheet-1987150-r3.pdf"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.app(knowledge=[T400])]


def _page(browser, app, locale="en-US"):
    ctx = browser.new_context(base_url=app.url, locale=locale, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    from playwright.sync_api import expect

    expect(page.locator("#chat-input")).to_be_visible()
    # the socket session exists once on_chat_start has sent the settings (uploads 404 before)
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    return ctx, page


def _pdf_responses(page) -> list:
    """Collects (url, body) of every PDF the viewer fetches from kbchat's routes."""
    got: list = []

    def on_response(resp):
        if "/kbchat/" in resp.url and resp.ok and "application/pdf" in (resp.headers.get("content-type") or ""):
            got.append((resp.url, resp.body()))

    page.on("response", on_response)
    return got


def _assert_highlight(pdf_bytes: bytes, page_no: int, excerpt: str) -> None:
    """The PDF has a highlight annotation on ``page_no`` whose rectangle covers the cited text."""
    import pymupdf

    doc = pymupdf.open(stream=pdf_bytes, filetype="pdf")
    page = doc[page_no - 1]
    annots = [a for a in page.annots() if a.type[1] == "Highlight"]
    assert annots, f"no highlight on page {page_no}"
    covered = " ".join(" ".join(page.get_textbox(a.rect).split()) for a in annots)
    words = [w for w in re.findall(r"\w+", excerpt)[:6]]
    assert words and all(w in covered for w in words), (words, covered[:300])
    assert sum(len(a.vertices or []) for a in annots) >= 4  # quads around the lines of the passage
    assert all(len(p.annots() and list(p.annots()) or []) == 0 for i, p in enumerate(doc) if i != page_no - 1)


def _source_line(answer_text: str, n: int = 1) -> tuple[int, str]:
    m = re.search(rf"Source {n} — [^,]+, page (\d+)[^:]*: “([^”]+)”", answer_text, re.I)
    return int(m.group(1)), m.group(2).rstrip("…")


def _last_answer(page):
    return page.locator("[data-step-type='assistant_message']").last


def test_persona_starters(browser, app, shots):
    from playwright.sync_api import expect

    ctx, page = _page(browser, app)
    page.locator("#chat-profiles").click()
    page.locator('[data-test="select-item:clinic-qpl"]').click()
    starter = page.get_by_role("button", name="Headache for days")
    expect(starter).to_be_visible()
    shots(page, "clinic-qpl-starters")
    page.locator("#chat-profiles").click()
    page.locator('[data-test="select-item:analyst"]').click()
    expect(page.get_by_role("button", name="Headache for days")).to_have_count(0)
    page.locator("#chat-profiles").click()
    page.locator('[data-test="select-item:clinic-qpl"]').click()
    page.get_by_role("button", name="Headache for days").click()   # a starter sends its message
    expect(page.get_by_text("I've had a headache for several days.").first).to_be_visible()
    expect(_last_answer(page)).to_be_visible()
    ctx.close()


def test_upload_progress_answer_and_citation_opens_pdf_at_page(browser, app, stub, shots):
    from playwright.sync_api import expect

    stub.mode = "ok"
    stub.delay = 0.02
    ctx, page = _page(browser, app)
    pdfs = _pdf_responses(page)
    page.locator("#upload-button-input").set_input_files(str(A100))
    expect(page.locator("#attachments")).to_contain_text(A100.name[:20])
    ask(page, "What is the GPU memory bandwidth of the A100 80GB?")
    expect(page.get_by_text(re.compile(r"Indexed .*pages, \d+ passages"))).to_be_visible(timeout=180_000)
    shots(page, "upload-summary")
    answer = _last_answer(page)
    expect(answer).to_contain_text("According to", timeout=60_000)
    expect(answer).to_contain_text(re.compile("Cited sources"))
    cite = answer.locator("a.element-link").filter(has_text=re.compile(r"source 1", re.I)).first
    expect(cite).to_be_visible()
    cited_page = int(re.search(r"Source 1 — [^,]+, page (\d+)", answer.inner_text(), re.I).group(1))
    cite.click()
    expect(page.locator("#side-view-title")).to_have_text(re.compile("Source 1", re.I))
    expect(page.locator("#side-view-content canvas").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)
    shots(page, "citation-pdf")
    # the viewer opens at the cited page: react-pdf renders that page's number into the DOM
    assert cited_page >= 1
    # the PDF the viewer received is the upload with the cited passage highlighted on that page
    page_no, excerpt = _source_line(answer.inner_text())
    (url, body), *_ = [(u, b) for u, b in pdfs if "/kbchat/upload/" in u and "passage=" in u]
    _assert_highlight(body, page_no, excerpt)
    ctx.close()


def test_shared_knowledge_is_searched_and_served(browser, app, stub, shots):
    from playwright.sync_api import expect

    stub.mode = "ok"
    ctx, page = _page(browser, app)
    pdfs = _pdf_responses(page)
    ask(page, "What is the maximum power consumption of the NVIDIA T400?")
    answer = _last_answer(page)
    expect(answer).to_contain_text(T400.name[:15], timeout=60_000)
    answer.locator("a.element-link").filter(has_text=re.compile(r"source 1", re.I)).first.click()
    expect(page.locator("#side-view-content canvas").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)
    shots(page, "knowledge-citation")
    page_no, excerpt = _source_line(answer.inner_text())
    bodies = [b for u, b in pdfs if "/kbchat/pdf/" in u and "passage=" in u]
    assert bodies, [u for u, _ in pdfs]
    _assert_highlight(bodies[0], page_no, excerpt)
    assert T400.read_bytes() == open(T400, "rb").read()  # the original is never written
    # the knowledge PDF is streamed from knowledge/ by the app's own route, not copied per citation
    resp = page.request.get(f"/kbchat/pdf/{hashlib.sha256(T400.read_bytes()).hexdigest()}")
    assert resp.ok and resp.body()[:5] == b"%PDF-"
    assert page.request.get("/kbchat/pdf/" + "0" * 64).status == 404
    ctx.close()


def test_reasoning_toggle_shows_thinking_step(browser, app, stub, shots):
    from playwright.sync_api import expect

    stub.mode = "reasoning_content"
    ctx, page = _page(browser, app)
    page.locator("#chat-settings-open-modal").click()
    page.locator("#reasoning").click()
    page.get_by_role("button", name=re.compile("confirm", re.I)).click()
    ask(page, "What is the NVIDIA T400 memory size?")
    expect(page.get_by_text(re.compile("Thinking")).first).to_be_visible(timeout=60_000)
    answer = _last_answer(page)
    expect(answer).to_contain_text("According to")
    expect(answer).not_to_contain_text("Let me look at the passages")
    shots(page, "reasoning")
    ctx.close()
    stub.mode = "ok"


def test_non_pdf_upload_gets_one_line(browser, app, tmp_path, shots):
    from playwright.sync_api import expect

    fake = tmp_path / "notes.pdf"
    fake.write_text("this is not a pdf at all")
    ctx, page = _page(browser, app)
    page.locator("#upload-button-input").set_input_files(str(fake))
    expect(page.locator("#attachments")).to_contain_text("notes.pdf")
    ask(page, "hello")
    expect(page.get_by_text(re.compile(r"notes\.pdf.*not indexed: not a PDF"))).to_be_visible(timeout=60_000)
    shots(page, "non-pdf")
    ctx.close()


def test_llm_down_gives_search_only_answer_then_recovers(browser, app, stub, shots):
    from playwright.sync_api import expect

    ctx, page = _page(browser, app)
    stub.stop()
    try:
        ask(page, "What is the NVIDIA T400 memory size?")
        answer = _last_answer(page)
        expect(answer).to_contain_text(re.compile("could not be reached"), timeout=60_000)
        expect(answer).to_contain_text("search-only answer")
        expect(answer.locator("a.element-link").first).to_be_visible()
        shots(page, "llm-down")
    finally:
        stub.start()
    ask(page, "And its bandwidth?")
    expect(page.locator("[data-step-type='assistant_message']").filter(has_text="According to").first
           ).to_be_visible(timeout=60_000)
    ctx.close()


def test_traditional_chinese_ui_and_chat(browser, app, stub, shots, tmp_path):
    from playwright.sync_api import expect

    stub.mode = "ok"
    zh = make_pdf(tmp_path / "知識庫說明.pdf",
                  ["內部知識庫可以讓員工用自然語言提問。系統會引用文件與頁碼。",
                   "上傳的檔案只屬於這個對話。管理者可以匯出分享的問答。"], fontname="china-t")
    ctx, page = _page(browser, app, locale="zh-TW")
    page.locator("#upload-button-input").set_input_files(str(zh))
    ask(page, "上傳的檔案屬於誰？")
    expect(page.get_by_text(re.compile(r"已完成 知識庫說明\.pdf 的索引：2 頁"))).to_be_visible(timeout=120_000)
    answer = _last_answer(page)
    expect(answer).to_contain_text("According to", timeout=60_000)
    expect(answer).to_contain_text("引用來源")            # the app's own lines follow the UI language
    expect(answer).to_contain_text(re.compile(r"知識庫說明\.pdf, 第 [12] 頁"))
    expect(page.get_by_role("button", name="分享此問答")).to_be_visible()
    # Chainlit's bundled zh-TW strings are used (not English)
    placeholder = page.locator("#chat-input").get_attribute("placeholder") or page.locator("#chat-input").inner_text()
    shots(page, "zh-TW")
    assert not re.search(r"Type your message", placeholder or "")
    ctx.close()


def _shared_ids(app) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "kbchat", "shared", "list", "--json",
                          "--data-dir", str(app.root / "data")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    return [json.loads(line)["id"] for line in out.stdout.splitlines() if line.strip()]


def test_share_undo_round_trip(browser, app, stub, shots):
    from playwright.sync_api import expect

    stub.mode = "ok"
    before = _shared_ids(app)
    ctx, page = _page(browser, app)
    ask(page, "How much memory does the NVIDIA T400 have?")
    answer = _last_answer(page)
    expect(answer).to_contain_text("According to", timeout=60_000)
    share = page.get_by_role("button", name=re.compile("Share this Q&A"))
    expect(share).to_be_visible()
    share.click()
    expect(page.get_by_role("button", name=re.compile("Shared ✓"))).to_be_visible()
    expect(page.get_by_text(re.compile("Sharing stores this question"))).to_be_visible()
    shots(page, "shared")
    after = _shared_ids(app)
    assert len(after) == len(before) + 1
    page.get_by_role("button", name=re.compile("Undo")).click()
    expect(page.get_by_role("button", name=re.compile("Share this Q&A"))).to_be_visible()
    page.wait_for_timeout(500)
    assert _shared_ids(app) == before
    ctx.close()


def test_office_and_scanned_uploads_are_cited_and_highlighted(browser, app, stub, shots, tmp_path):
    """A .docx made by the test is converted by LibreOffice and cited at its page; a scanned page is
    read by Tesseract, cited as 'scanned', and its Source opens highlighted."""
    from playwright.sync_api import expect

    from tests.fixtures import scanned_pdfs as S

    stub.mode = "ok"
    doc = S.docx(tmp_path / "handbook.docx", ["Welcome to the handbook.",
                                              "The heron valve must be serviced every 90 days by the night crew."])
    scan = S.scanned_pdf(tmp_path / "scan.pdf", [("Cover page of the maintenance log.", "helv"),
                                                  ("The osprey pump pressure limit is 42 bar.", "helv")],
                         scanned=[False, True])
    ctx, page = _page(browser, app)
    pdfs = _pdf_responses(page)
    page.locator("#upload-button-input").set_input_files([str(doc), str(scan)])
    ask(page, "How often must the heron valve be serviced?")
    answer = page.locator("[data-step-type='assistant_message']").filter(has_text="handbook.docx").last
    expect(answer).to_contain_text("According to", timeout=240_000)
    expect(page.get_by_text(re.compile(r"Indexed \*?\*?scan\.pdf"))).to_be_visible()
    answer.locator("a.element-link").filter(has_text=re.compile(r"source 1", re.I)).first.click()
    expect(page.locator("#side-view-content canvas").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)
    page_no, excerpt = _source_line(answer.inner_text())
    assert re.search(r"Source 1 — handbook\.docx, page", answer.inner_text(), re.I)
    _assert_highlight([b for u, b in pdfs if "passage=" in u][-1], page_no, excerpt)
    shots(page, "docx-citation")

    ask(page, "What is the pressure limit of the osprey pump?")
    ocr_answer = page.locator("[data-step-type='assistant_message']").filter(has_text="osprey").last
    expect(ocr_answer).to_contain_text("scan.pdf, page 2, scanned", timeout=120_000)
    n_before = len(pdfs)
    ocr_answer.locator("a.element-link").filter(has_text=re.compile(r"source 1", re.I)).first.click()
    expect(page.locator("#side-view-title")).to_have_text(re.compile("Source 1", re.I))
    page.wait_for_timeout(3000)
    page_no, excerpt = _source_line(ocr_answer.inner_text())
    assert page_no == 2
    new = [b for u, b in pdfs[n_before:] if "passage=" in u] or [b for u, b in pdfs if "passage=" in u]
    import pymupdf

    marked = pymupdf.open(stream=new[-1], filetype="pdf")
    assert [a.type[1] for a in marked[1].annots()] == ["Highlight"]  # on the scanned page
    shots(page, "ocr-citation")
    ctx.close()

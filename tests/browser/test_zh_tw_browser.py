"""The UI in Traditional Chinese with the language model down (issue 21): the real app (`chainlit run`,
single-user local mode, so the user is an admin), headless Chromium with locale zh-TW, KBCHAT_LLM_BASE_URL
on a closed port. An upload and a question (a search-only answer under the LLM-down notice), the chat
settings and the command menu, /review (a pending record approved, the next one shown) and /kb (a file
added to the clinic base from the upload, the bases with their zh-TW descriptions, a base's documents):
kbchat's messages hold no English sentence except file names and quoted passages.

What counts as an English sentence: three or more Latin-letter words in a row separated only by
spaces (``ENGLISH_RUN``), after removing from the visible text (1) the passages kbchat quotes between
“ and ” (document text, not the UI's), (2) URLs (the LLM-down notice names the endpoint), and (3) the
file names of this test. Single words and pairs (`UTC`, `PDF`, `Q&A`, a user or persona id, a command
like `/kb create`) are names, not sentences; "Only administrators can review shared Q&A." or "could not
be reached" are caught. Screenshots: docs/screenshots/zh-tw-*.png when KBCHAT_SHOTS is set."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO, make_pdf

NO_LLM = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: the LLM is down
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.app(env={"KBCHAT_LLM_BASE_URL": NO_LLM}),
              pytest.mark.shots(REPO / "docs" / "screenshots")]
PDF_NAME = "知識庫說明.pdf"
PAGES = ["內部知識庫可以讓員工用自然語言提問。系統會引用文件與頁碼。",
         "上傳的檔案只屬於這個對話。管理者可以匯出分享的問答。"]
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:[ \t]+[A-Za-z][A-Za-z'’-]*){2,}")


def english_sentences(text: str, names: tuple[str, ...] = (PDF_NAME,)) -> list[str]:
    """The English sentences left in ``text`` once quoted passages, URLs and file names are removed."""
    text = re.sub(r"“[^”]*”", " ", text)
    text = re.sub(r"https?://\S+", " ", text)
    for name in names:
        text = text.replace(name, " ")
    return ENGLISH_RUN.findall(text)


def test_the_detector():
    assert english_sentences("⚠️ The language model at http://x/v1 could not be reached (connection refused).")
    assert english_sentences("**審核分享的問答** · nothing left to review")
    assert not english_sentences("- 來源 1 — 知識庫說明.pdf, 第 2 頁: “The okapi booster vaccine is given”")
    assert not english_sentences("無法連線到位於 http://127.0.0.1:9/v1 的語言模型 · 12:00 UTC · Q&A · /kb create 名稱")


def _kbchat_text(page) -> str:
    """The visible text of every message of the chat (kbchat's, the user's, their buttons)."""
    return "\n".join(page.locator(".step").all_inner_texts())


def _assert_no_english(page, where: str) -> None:
    text = _kbchat_text(page)
    assert PDF_NAME in text and "知識庫" in text, f"{where}: the messages were not read: {text!r}"
    found = english_sentences(text)
    assert not found, f"{where}: English in the zh-TW UI: {found}\n---\n{_kbchat_text(page)}"


def _say(page, text: str) -> None:
    page.locator("#chat-input").fill(text)
    page.locator("#chat-submit").click()


def _pending(app, question: str, answer: str) -> None:
    from kbchat.sharing.store import SharedQA, ShareStore

    with ShareStore(app.root / "data" / "kbchat.sqlite") as s:
        s.share(SharedQA(user="alice", persona_id="general", question=question, answer=answer,
                         sources=[{"n": 1, "file": PDF_NAME, "page": 2, "text": PAGES[1]}],
                         answer_key=f"zh-{len(question)}-{question[:4]}"))


def test_zh_tw_upload_question_review_kb_without_llm(app, browser, shots, tmp_path):
    from playwright.sync_api import expect

    ctx = browser.new_context(base_url=app.url, locale="zh-TW", viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    expect(page.locator("#chat-input")).to_be_visible()
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()

    # the chat settings and the command menu
    page.locator("#chat-settings-open-modal").click()
    expect(page.get_by_text("推理（適用於推理模型）")).to_be_visible()
    expect(page.get_by_text("使用的段落數")).to_be_visible()
    page.keyboard.press("Escape")
    page.locator("#chat-input").fill("/")
    expect(page.get_by_text("審核分享的問答；匯入問答表（管理員）")).to_be_visible()
    page.locator("#chat-input").fill("")

    # an upload and a question with the language model down: a search-only answer under the zh-TW notice
    pdf = make_pdf(tmp_path / PDF_NAME, PAGES, fontname="china-t")
    page.locator("#upload-button-input").set_input_files(str(pdf))
    expect(page.locator("#attachments")).to_contain_text(PDF_NAME)
    _say(page, "上傳的檔案屬於誰？")
    expect(page.get_by_text(re.compile(r"已完成 知識庫說明\.pdf 的索引：2 頁"))).to_be_visible(timeout=120_000)
    answer = page.locator("[data-step-type='assistant_message']").filter(has_text="無法連線")
    expect(answer).to_be_visible(timeout=90_000)
    expect(answer).to_contain_text("語言模型（連線被拒）")
    expect(answer).to_contain_text("僅搜尋結果")
    expect(answer).to_contain_text(re.compile(r"來源 1 — 知識庫說明\.pdf, 第 [12] 頁"))
    expect(answer.locator("a.element-link").first).to_be_visible()  # the 來源 n pill opens the PDF
    expect(page.get_by_role("button", name="加入知識庫：clinic")).to_be_visible()
    page.wait_for_timeout(1000)
    shots(page, "zh-tw-upload-question")
    _assert_no_english(page, "upload + question")

    # /review: two pending records; approve the first, the second is shown
    _pending(app, "上傳的檔案屬於誰？", "上傳的檔案只屬於這個對話（來源 1）。")
    _pending(app, "管理者可以做什麼？", "管理者可以匯出分享的問答。")
    _say(page, "/review")
    card = page.locator("[data-step-type='assistant_message']").filter(has_text="審核分享的問答").last
    expect(card).to_contain_text("2 筆待審")
    expect(card).to_contain_text("分享者 alice")
    expect(card).to_contain_text(re.compile(r"知識庫說明\.pdf, 第 2 頁"))
    page.locator("[id^=review-approve-]").first.click()
    expect(page.get_by_text(re.compile(r"已核准：.*尚餘 1 筆待審"))).to_be_visible()
    expect(page.locator("[data-step-type='assistant_message']").filter(has_text="管理者可以做什麼？").last
           ).to_contain_text("1 筆待審")
    expect(page.get_by_role("button", name="核准")).to_be_visible()
    expect(page.get_by_role("button", name="匯入問答表")).to_be_visible()
    page.wait_for_timeout(500)
    shots(page, "zh-tw-review")
    _assert_no_english(page, "/review")

    # /kb: the upload added to the clinic base, the bases (zh-TW descriptions), the base's documents
    page.get_by_role("button", name="加入知識庫：clinic").click()
    expect(page.get_by_text(re.compile(r"已將 知識庫說明\.pdf 加入知識庫 clinic"))).to_be_visible(timeout=90_000)
    _say(page, "/kb")
    listing = page.locator(".step").filter(has_text="知識庫（2 個）")
    expect(listing).to_contain_text("病患衛教單張")
    page.locator("#kbdocs-clinic").click()
    table = page.locator(".step").filter(has_text="clinic：1 份文件")
    expect(table.locator("table")).to_contain_text(PDF_NAME)
    expect(page.locator("#kbrm-clinic-1")).to_contain_text("移除 1")
    page.wait_for_timeout(500)
    shots(page, "zh-tw-kb")
    _assert_no_english(page, "/kb")
    ctx.close()

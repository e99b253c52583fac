"""Review of shared Q&A for real: `chainlit run app.py`, accounts in the database, headless Chromium, the
LLM stub. A user's shares wait as pending; the admin approves, rejects and edits them in /review (one
record at a time, the count going down); `kbchat export` writes what was approved (the edit, not the
original); an admin imports a sheet from the review view; a plain user and no login get nothing from the
review actions, also when calling them directly."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from openpyxl import Workbook

from kbchat.sharing.store import ShareStore
from tests.browser.conftest import ask, browser_login, login, wait_answer
from tests.conftest import CORPUS
from tests.fixtures.appserver import kbchat_cli
from tests.sharing.test_share import make

T400 = CORPUS / "nvidia-t400-datasheet-1987150-r3.pdf"
SHOTS = Path("/work/shots/issue-12b")
QUESTIONS = ["What memory does the T400 have?", "How much power does the T400 use?",
             "Which display outputs does the T400 offer?"]
FAQ_Q = "What is the zebra clinic's fax number?"
FAQ_A = "The zebra clinic's fax number is 02-5550-1234."


def _import_faq(root: Path) -> None:
    """An FAQ sheet imported as records and as passages of the default base, before the app starts."""
    wb = Workbook()
    wb.active.append(["問題", "答案"])
    wb.active.append([FAQ_Q, FAQ_A])
    wb.save(root / "clinic-faq.xlsx")
    r = kbchat_cli("shared", "import", str(root / "clinic-faq.xlsx"), "--as-knowledge", "default",
                   data_dir=root / "data")
    assert r.returncode == 0 and "1 pair(s) indexed in knowledge base default" in r.stdout, r.stderr


pytestmark = [
    pytest.mark.browser, pytest.mark.slow, pytest.mark.shots(SHOTS),
    # the CLI embedded in fp32 (tests/conftest.py); the app must use the same variant
    pytest.mark.app(admins=("boss",), users=("alice", "bob"), knowledge=[T400], before_start=_import_faq,
                    env={"KBCHAT_EMBEDDING_PRECISION": "fp32"}),
]


def store(app) -> ShareStore:
    return ShareStore(app.root / "data" / "kbchat.sqlite")


def export(app, *args: str) -> list[dict]:
    r = kbchat_cli("export", "--format", "alpaca", *args, data_dir=app.root / "data")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _card(page):
    return page.locator("[data-step-type='assistant_message']").filter(has_text="Review shared Q&A").last


def test_review_session_in_the_browser(app, browser, shots):
    from playwright.sync_api import expect

    # alice shares three answers: each waits for review
    ctx, page = browser_login(browser, app.url, "alice")
    for i, q in enumerate(QUESTIONS):
        ask(page, q)
        answer = wait_answer(page, i)
        answer.locator("[id^=share-]").click()
        expect(answer.locator("[id^=shared-]")).to_be_visible()
    ctx.close()
    with store(app) as s:
        shared = [r for r in s.list() if r.origin == "share"]
        assert [r.question for r in shared] == QUESTIONS
        assert {r.status for r in shared} == {"pending"} and {r.user for r in shared} == {"alice"}
    assert [x["instruction"] for x in export(app)] == [FAQ_Q]  # none of them reviewed: none exported
    assert len(export(app, "--status", "all")) == 4

    # a plain user asking for the review view gets a refusal, not the records
    ctx, page = browser_login(browser, app.url, "alice")
    ask(page, "/review")
    expect(page.get_by_text("Only administrators can review shared Q&A.")).to_be_visible()
    assert page.locator("[id^=review-approve-]").count() == 0
    ctx.close()

    ctx, page = browser_login(browser, app.url, "boss")
    ask(page, "/review")
    card = _card(page)
    expect(card).to_contain_text("3 pending")
    expect(card).to_contain_text(QUESTIONS[0])
    expect(card).to_contain_text("shared by alice")
    expect(card).to_contain_text(re.compile(r"nvidia-t400-datasheet-1987150-r3\.pdf, page \d+"))
    expect(card).to_contain_text("Persona general")
    shots(page, "review-1-pending-record")

    page.locator(f"[id^=review-approve-]").first.click()
    expect(page.get_by_text(re.compile(r"Approved: .* 2 pending left"))).to_be_visible()
    card = _card(page)
    expect(card).to_contain_text("2 pending")
    expect(card).to_contain_text(QUESTIONS[1])
    shots(page, "review-2-approved-count-down")
    assert [x["instruction"] for x in export(app)] == [FAQ_Q, QUESTIONS[0]]  # `kbchat export` (default) has it

    page.locator("[id^=review-reject-]").first.click()
    expect(page.get_by_text(re.compile(r"Rejected: .* 1 pending left"))).to_be_visible()
    card = _card(page)
    expect(card).to_contain_text(QUESTIONS[2])
    page.locator("[id^=review-edit-]").first.click()
    expect(page.get_by_text("Type the corrected answer as your next message")).to_be_visible()
    ask(page, "The T400 offers three mini DisplayPort 1.4 outputs (reviewed).")
    edited = page.locator("[data-step-type='assistant_message']").filter(has_text="Answer edited")
    expect(edited).to_contain_text("The T400 offers three mini DisplayPort 1.4 outputs (reviewed).")
    expect(edited).to_contain_text("Original answer")
    shots(page, "review-3-edited")
    page.locator("[id^=review-approve-]").first.click()
    expect(page.get_by_text(re.compile(r"Approved: .* 0 pending left"))).to_be_visible()
    expect(page.get_by_text(re.compile("nothing left to review"))).to_be_visible()
    shots(page, "review-4-nothing-left")

    exported = export(app)
    assert [x["instruction"] for x in exported] == [FAQ_Q, QUESTIONS[0], QUESTIONS[2]]  # the rejected one never
    assert exported[2]["output"] == "The T400 offers three mini DisplayPort 1.4 outputs (reviewed)."
    with store(app) as s:
        by_q = {r.question: r for r in s.list()}
    assert by_q[QUESTIONS[1]].status == "rejected" and by_q[QUESTIONS[1]].reviewed_by == "boss"
    assert by_q[QUESTIONS[2]].answer.startswith("According to")  # the original kept beside the edit

    # an admin imports a sheet from the review view
    wb = Workbook()
    wb.active.append(["問題", "答案"])
    wb.active.append(["T400 的功耗是多少？", "最大功耗為 30 W。"])
    wb.active.append(["T400 支援幾個螢幕？", "最多三個。"])
    wb.active.append(["沒有答案的問題", None])
    sheet = Path(app.root) / "t400-faq.xlsx"
    wb.save(sheet)
    page.locator("#review-import").last.click()
    expect(page.locator("#ask-button-input")).to_be_attached()
    page.locator("#ask-button-input").set_input_files(str(sheet))
    result = page.locator("[data-step-type='assistant_message']").filter(has_text="t400-faq.xlsx: 2 imported")
    expect(result).to_contain_text("t400-faq.xlsx: 2 imported, 0 duplicates skipped, 1 row rejected")
    expect(result).to_contain_text("t400-faq.xlsx: row 4: empty answer")
    expect(page.locator("#stop-button")).to_have_count(0)  # the chat is not left "running"
    expect(page.locator("#chat-submit")).to_be_visible()
    shots(page, "review-5-sheet-imported")
    ctx.close()
    assert "T400 的功耗是多少？" in [x["instruction"] for x in export(app)]
    with store(app) as s:
        imported = [r for r in s.list() if r.origin == "import" and r.source != "clinic-faq.xlsx"]
    assert {(r.status, r.reviewed_by, r.source) for r in imported} == {("approved", "boss", "t400-faq.xlsx")}


def _call_actions(url: str, cookie: str | None, record_id: str) -> dict:
    """Open a chat as the cookie's user and POST every review action directly."""
    from tests.ui.test_load import Chat

    async def go():
        chat = Chat(url, cookie=cookie or "")
        await chat.connect()
        out = {}
        try:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                for name in ("review_approve", "review_reject", "review_edit", "review_skip", "review_import"):
                    r = await http.post("/project/action", headers={"Cookie": cookie} if cookie else {},
                                        json={"sessionId": chat.session_id,
                                              "action": {"name": name, "id": f"x-{name}", "payload": {"id": record_id},
                                                         "forId": None, "label": ""}})
                    out[name] = (r.status_code, r.json() if r.status_code == 200 else None)
        finally:
            await chat.close()
        return out

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        return pool.submit(asyncio.run, go()).result(180)


def test_plain_user_and_no_login_cannot_review(app):
    with store(app) as s:
        rec = s.share(make("security-check", question="Pending, whatever bob does"))
    bob = login(app.url, "bob")
    cookie = "; ".join(f"{k}={v}" for k, v in bob.cookies.items())
    got = _call_actions(app.url, cookie, rec.id)
    print("bob calling the review actions:", got)
    for name, (code, body) in got.items():
        assert code == 200 and body["response"] == {"ok": False, "error": "administrators only"}, name
    with store(app) as s:
        after = s.get(rec.id)
        assert (after.status, after.reviewed_by, after.edited_answer) == ("pending", None, None)
        n = len(s)
    # no login: Chainlit refuses the action call itself
    anon = httpx.Client(base_url=app.url, timeout=30)
    r = anon.post("/project/action", json={"sessionId": "x", "action": {"name": "review_approve", "id": "x",
                                                                         "payload": {"id": rec.id}}})
    assert r.status_code == 401
    with store(app) as s:
        assert s.get(rec.id).status == "pending" and len(s) == n


def test_an_answer_from_an_imported_pair_cites_file_and_row(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "bob")
    ask(page, FAQ_Q)
    answer = wait_answer(page, 0)
    expect(answer).to_contain_text("Source 1 — clinic-faq.xlsx, row 2:")
    expect(answer).to_contain_text("02-5550-1234")
    answer.locator("a.element-link").filter(has_text=re.compile("source 1", re.I)).first.click()
    expect(page.locator("#side-view-title")).to_have_text("Source 1")
    expect(page.locator("#side-view-content")).to_contain_text("02-5550-1234")  # the row's pair itself
    shots(page, "faq-answer-cites-sheet-row")
    ctx.close()

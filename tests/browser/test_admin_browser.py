"""The admin console in Chromium, for real (`chainlit run app.py`, password sign-in, the LLM stub): the admin
follows the chat header's link to /admin, adds a group and a user in it (one-time password), creates a base
and restricts it to that group, uploads two PDFs and watches each file's progress, the new user asks a
question in the chat and shares the answer, the admin edits and approves it in Review (keyboard shortcut),
downloads an xlsx export holding the edited pair, sees the question in Usage and every change in Audit.
Then the console in Traditional Chinese: no English sentence on its pages. Screenshots:
docs/screenshots/admin-*.png (KBCHAT_SHOTS=1)."""

from __future__ import annotations

import io
import re

import pytest

from tests.browser.conftest import ask, browser_login, wait_answer
from tests.conftest import CORPUS, REPO, make_pdf
from tests.fixtures.appserver import kbchat_cli

T400 = CORPUS / "nvidia-t400-datasheet-1987150-r3.pdf"
QUESTION = "What memory does the T400 have?"
EDITED = "The T400 has 4 GB of GDDR6 memory (edited by the admin)."
# Three Latin words in a row: an English sentence (as tests/test_messages.py); names are not sentences.
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:\s+[A-Za-z][A-Za-z'’-]*){2,}")

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.shots(REPO / "docs" / "screenshots"),
              pytest.mark.app(admins=("boss",), users=("alice",), knowledge=[T400])]


@pytest.fixture(scope="module")
def boss(app, browser):
    """The admin's browser, signed in, on the chat."""
    ctx, page = browser_login(browser, app.url, "boss")
    yield page
    ctx.close()


def test_header_link_opens_the_console(app, boss, shots):
    from playwright.sync_api import expect

    link = boss.locator("#kbchat-admin-link")
    expect(link).to_have_text("Administration")
    shots(boss, "admin-0-chat-header-link")
    link.click()
    expect(boss.locator("h1")).to_have_text("Administration")
    expect(boss.locator("nav.sections a")).to_have_count(7)
    shots(boss, "admin-1-home")


def test_a_plain_user_has_no_link(app, browser):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "alice")
    page.wait_for_timeout(1500)  # the script has asked /admin/link by now
    expect(page.locator("#kbchat-admin-link")).to_have_count(0)
    page.goto("/admin/people")
    expect(page.locator("p.error")).to_have_text("The administration console is for administrators only.")
    ctx.close()


def test_add_a_group_and_a_user_in_it(app, boss, shots, facts):
    from playwright.sync_api import expect

    boss.goto("/admin/people")
    boss.locator("#add-group input[name=name]").fill("nurses")
    boss.locator("#add-group input[name=quota]").fill("20")
    boss.locator("#add-group button").click()
    expect(boss.locator('tr[data-group="nurses"]')).to_be_visible()
    boss.locator("#add-user input[name=name]").fill("dana")
    boss.locator("#add-user input[name=groups][value=nurses]").check()
    boss.locator("#add-user button").click()
    expect(boss.locator("#one-time-password")).to_be_visible()
    facts["otp"] = boss.locator("#one-time-password").inner_text()
    expect(boss.locator('tr[data-user="dana"] input[name=groups]')).to_have_value("nurses")
    shots(boss, "admin-2-people")


def test_create_a_base_restricted_to_the_group_and_upload_two_pdfs(app, boss, shots, tmp_path):
    from playwright.sync_api import expect

    boss.goto("/admin/knowledge")
    boss.locator("#create-base input[name=name]").fill("wards")
    boss.locator("#create-base input[name=description]").fill("Ward procedures for the nursing staff.")
    boss.locator("#create-base button").click()
    expect(boss.locator("p.notice")).to_have_text("Knowledge base created.")
    boss.locator("#access input[value=listed]").check()
    boss.locator("#access input[name=read_groups][value=nurses]").check()
    boss.locator("#access button").click()
    expect(boss.locator("#access-now")).to_contain_text("nurses")
    pages = [f"Night shift handover, step {i}: check the drug chart and the fluid balance." for i in range(1, 13)]
    one = make_pdf(tmp_path / "night-handover.pdf", pages)
    two = make_pdf(tmp_path / "fall-prevention.pdf", ["Fall prevention: bed rails, non-slip socks, call bell."] * 6)
    boss.locator("#upload input[type=file]").set_input_files([str(one), str(two)])
    boss.locator("#upload button").click()
    rows = boss.locator(".job tr[data-file]")
    expect(rows).to_have_count(2)
    expect(boss.locator(".job progress.pages").first).to_be_visible()
    shots(boss, "admin-3-upload-progress")
    expect(boss.locator('tr[data-doc="night-handover.pdf"]')).to_be_visible(timeout=180_000)  # reloaded when done
    expect(boss.locator('tr[data-doc="fall-prevention.pdf"]')).to_be_visible()
    expect(boss.locator('.job tr[data-stage="done"]')).to_have_count(2)
    expect(boss.locator('.job tr[data-file="0"] .pages-text')).to_have_text("12 / 12")
    shots(boss, "admin-4-knowledge-base")
    r = kbchat_cli("kb", "access", "wards", data_dir=app.root / "data",
                   env={"KBCHAT_KNOWLEDGE_DIR": str(app.root / "knowledge")})
    assert "wards: read: group:nurses" in r.stdout, r.stderr


def test_the_new_user_asks_and_shares(app, browser, facts):
    from playwright.sync_api import expect

    ctx = browser.new_context(base_url=app.url, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    page.locator("#email").fill("dana")
    page.locator("#password").fill(facts["otp"])
    page.locator("button[type=submit]").click()
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    ask(page, QUESTION)
    answer = wait_answer(page, 0)
    answer.locator("[id^=share-]").click()
    expect(answer.locator("[id^=shared-]")).to_be_visible()
    ctx.close()


def test_edit_and_approve_then_export_xlsx(app, boss, shots):
    import openpyxl
    from playwright.sync_api import expect

    boss.goto("/admin/review")
    expect(boss.locator("#question")).to_have_text(QUESTION)
    boss.locator("#edit-answer").fill(EDITED)
    boss.locator("#do-edit").click()
    expect(boss.locator("p.notice")).to_have_text("Answer edited (not approved yet).")
    expect(boss.locator("#answer")).to_have_text(EDITED)
    shots(boss, "admin-5-review")
    boss.locator("body").press("a")  # the approve shortcut
    expect(boss.locator("p.notice")).to_have_text("Approved.")
    expect(boss.locator("#n-approved")).to_have_text("1")
    boss.locator("#export select[name=format]").select_option("xlsx")
    with boss.expect_download() as dl:
        boss.locator("#do-export").click()
    rows = list(openpyxl.load_workbook(io.BytesIO(open(dl.value.path(), "rb").read())).active.iter_rows(
        values_only=True))
    assert len(rows) == 2 and rows[1][0] == QUESTION and EDITED in rows[1]
    shots(boss, "admin-6-dataset")


def test_usage_shows_the_question_and_audit_the_changes(app, boss, shots):
    from playwright.sync_api import expect

    boss.goto("/admin/usage")
    expect(boss.locator("#n-questions")).to_have_text("1")
    expect(boss.locator("#per-user")).to_contain_text("dana")
    expect(boss.locator("#per-persona")).to_be_visible()
    shots(boss, "admin-7-usage")
    boss.goto("/admin/audit")
    audit = boss.locator("#audit")
    for action in ("group.add", "user.add", "group.member.add", "kb.create", "kb.access", "kb.add", "review.edit",
                   "review.approve", "export"):
        expect(audit.locator(f'tr[data-action="{action}"]').first).to_be_visible()
    shots(boss, "admin-8-audit")
    boss.goto("/admin/system")
    expect(boss.locator('tr[data-check="embedder"]')).to_have_attribute("data-status", "ok")
    shots(boss, "admin-9-system")


def _english_sentences(page) -> list[str]:
    """English runs in the page's text, leaving out code (audit actions, diagnostic output) and what the
    organisation wrote (``.content``: a base's description as its admin typed it; questions, answers)."""
    text = page.evaluate("""() => { const c = document.body.cloneNode(true);
        c.querySelectorAll('code, option, script, .content').forEach(e => e.remove()); return c.innerText; }""")
    return [m.group(0) for m in ENGLISH_RUN.finditer(text)]


def test_the_console_in_traditional_chinese_has_no_english_sentence(app, browser, shots):
    from playwright.sync_api import expect

    ctx = browser.new_context(base_url=app.url, viewport={"width": 1280, "height": 900}, locale="zh-TW")
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    page.locator("#email").fill("boss")
    from tests.fixtures.appserver import PASSWORDS

    page.locator("#password").fill(PASSWORDS["boss"])
    page.locator("button[type=submit]").click()
    expect(page.locator("#kbchat-admin-link")).to_have_text("管理主控台")
    found = {}
    for path in ("/admin", "/admin/people", "/admin/knowledge", "/admin/knowledge/wards", "/admin/review",
                 "/admin/usage", "/admin/audit", "/admin/system"):
        page.goto(path)
        expect(page.locator("nav.sections")).to_contain_text("人員")
        if english := _english_sentences(page):
            found[path] = english
        if path == "/admin/knowledge/wards":
            shots(page, "admin-zh-tw-knowledge-base")
        if path == "/admin/people":
            shots(page, "admin-zh-tw-people")
    assert not found, found
    ctx.close()

"""The console's Personas page in Chromium, for real (`chainlit run app.py`, password sign-in, the LLM stub):
alice (admin) creates a persona bound to base hr and visible to group hr in the editor; bob (in hr) then finds
it in the chat's persona menu without a restart and carol (not in hr) does not; an invalid field shows the
loader's message beside it; the preview link opens a chat with a draft persona; the page in Traditional
Chinese. Screenshots: docs/screenshots/personas-*.png (KBCHAT_SHOTS=1)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ask, browser_login
from tests.conftest import REPO
from tests.fixtures.appserver import kbchat_cli


def _setup(root):
    (root / "knowledge" / "hr").mkdir(parents=True, exist_ok=True)
    (root / "knowledge" / "hr" / "README.md").write_text("HR policies: leave, salaries.\n", encoding="utf-8")
    for args in (("groups", "add", "hr"), ("users", "groups", "bob", "--add", "hr")):
        r = kbchat_cli(*args, data_dir=root / "data")
        assert r.returncode == 0, (args, r.stderr)


pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.shots(REPO / "docs" / "screenshots"),
              pytest.mark.app(admins=("alice",), users=("bob", "carol"), before_start=_setup)]


def test_alice_creates_a_persona_for_hr_in_the_console(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "alice")
    page.goto("/admin/personas")
    expect(page.locator("#pdb-row-general")).to_be_visible()
    shots(page, "personas-1-list")
    page.locator("#pdb-new").click()
    form = page.locator("#pdb-editor")
    form.locator('input[name="id"]').fill("hr-helper")
    form.locator('input[name="name.en"]').fill("HR helper")
    form.locator('input[name="name.zh-TW"]').fill("人資小幫手")
    form.locator('textarea[name="description.en"]').fill("Answers from the HR policies.")
    form.locator('textarea[name="situation"]').fill("You answer questions about the HR policies.")
    form.locator('textarea[name="task"]').fill("Answer from the passages and cite them like [1].")
    form.locator('textarea[name="starters.en"]').fill("Leave days | How many leave days do I have?")
    form.locator('input[name="knowledge"][value="default"]').uncheck()
    form.locator('input[name="knowledge"][value="hr"]').check()
    form.locator('input[name="visible_to"][value="hr"]').check()
    form.locator('input[name="temperature"]').fill("3")  # k's own input refuses 50 in the browser already
    form.locator('select[name="status"]').select_option("published")
    page.locator("#pdb-save").click()
    problem = page.locator('.pdb-problem[data-field="temperature"]')
    expect(problem).to_contain_text("field 'temperature': Input should be less than or equal to 2")
    expect(page.locator("p.error").first).to_contain_text("Nothing was saved")
    shots(page, "personas-2-invalid-field")
    page.locator('#pdb-editor input[name="temperature"]').fill("0.3")
    page.locator("#pdb-save").click()
    expect(page.locator("p.notice")).to_be_visible()
    expect(page.locator("#pdb-versions")).to_contain_text("create")
    shots(page, "personas-3-saved-with-versions")
    ctx.close()


def test_bob_in_hr_sees_it_in_the_menu_carol_does_not(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "bob")
    page.locator("#chat-profiles").click()
    expect(page.locator('[data-test="select-item:hr-helper"]')).to_be_visible()
    shots(page, "personas-4-bob-menu-has-hr-helper")
    ctx.close()
    ctx, page = browser_login(browser, app.url, "carol")
    page.locator("#chat-profiles").click()
    expect(page.locator('[data-test="select-item:general"]')).to_be_visible()
    assert page.locator('[data-test="select-item:hr-helper"]').count() == 0
    ctx.close()


def test_preview_opens_a_chat_with_a_draft(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "alice")
    lib = app.root / "prompts.csv"
    lib.write_text('"act","prompt"\n"Film Critic","I want you to act as a film critic."\n', encoding="utf-8")
    page.goto("/admin/personas")
    page.locator('#pdb-import-csv input[type="file"]').set_input_files(str(lib))
    page.locator('#pdb-import-csv button[type="submit"]').click()
    expect(page.locator("#pdb-row-film-critic")).to_contain_text("Draft")
    page.goto("/admin/personas/preview/film-critic")
    expect(page.locator(".step").filter(has_text="Preview of the persona Film Critic (Draft)")).to_be_visible()
    ask(page, "What do you think of silent films?")
    # the preview line, then the answer (the default base is empty here: an answer without sources)
    expect(page.locator("[data-step-type='assistant_message']")).to_have_count(2, timeout=90_000)
    assert "No persona is available" not in page.locator("body").inner_text()
    import json
    import sqlite3

    con = sqlite3.connect(app.root / "data" / "kbchat.sqlite")
    try:
        personas = [json.loads(r[0])["persona_id"] for r in con.execute("SELECT record FROM answers")]
    finally:
        con.close()
    assert personas == ["film-critic"]  # the draft answered (the header keeps the menu's default name)
    shots(page, "personas-5-preview-of-a-draft")
    ctx.close()


def test_the_page_in_traditional_chinese(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "alice")
    page.goto("/admin/personas?lang=zh-TW")
    expect(page.locator("#pdb-new")).to_have_text("新增角色")
    shots(page, "zh-tw-personas")
    page.goto("/admin/personas/edit/general?lang=zh-TW")
    expect(page.locator("#pdb-save")).to_have_text("儲存")
    shots(page, "zh-tw-persona-editor")
    ctx.close()

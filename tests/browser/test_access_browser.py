"""Access control in Chromium, for real (`chainlit run app.py`, password sign-in, the LLM stub): base `hr` is
readable by group hr only (tests/fixtures/access_app.py). Bob's answer on the hr topic shows no hr passage or
file and says once that a base was left out, `/kb hr` is refused, the persona limited to hr is not in his
menu; alice sees that persona and her hr answer is cited, its Source opening the PDF; carol's third question
of the day (her group's quota is 2) gets the quota's line. Screenshots: docs/screenshots/access-*.png
(KBCHAT_SHOTS=1)."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ask, browser_login, wait_answer
from tests.conftest import REPO
from tests.fixtures import access_app as A

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.shots(REPO / "docs" / "screenshots"),
              pytest.mark.app(admins=("boss",), users=("alice", "bob", "carol"),
                              pdfs={A.HANDBOOK: A.HANDBOOK_PAGES}, before_start=A.prepare(),
                              env={"KBCHAT_PERSONAS_DIR": str(A.PERSONAS), "KBCHAT_QUOTA_QUESTIONS_PER_DAY": "50"})]

WITHHELD = "Knowledge bases not open to you were left out of this search: 1 of this persona's 2."


def test_bob_gets_no_hr_passage_and_no_hr_persona(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "bob")
    # one persona left for him: Chainlit hides the picker; the hr persona is nowhere on the page
    expect(page.locator("#chat-profiles")).to_have_count(0)
    assert page.locator('[data-test="select-item:hr-desk"]').count() == 0
    ask(page, A.QUESTION)
    answer = wait_answer(page, 0)
    expect(answer).to_contain_text(A.HANDBOOK)
    expect(page.locator(".step").filter(has_text=WITHHELD)).to_have_count(1)
    body = page.locator("body").inner_text()
    assert A.CODE not in body and A.HR_PDF not in body and A.HR_MD not in body
    assert len(re.findall(r"Source \d+ — ", answer.inner_text(), re.I)) == A.K  # a full top k
    shots(page, "access-1-bob-answer-without-hr")
    ask(page, "And the salary review meeting code?")
    wait_answer(page, 1)
    expect(page.locator(".step").filter(has_text=WITHHELD)).to_have_count(1)  # said once per chat
    ask(page, "/kb hr")
    expect(page.locator(".step").filter(has_text="Only administrators can manage knowledge bases.")).to_be_visible()
    body = page.locator("body").inner_text()
    assert A.CODE not in body and A.HR_PDF not in body and A.HR_MD not in body
    shots(page, "access-2-bob-kb-hr-refused")
    ctx.close()


def test_alice_sees_the_hr_persona_and_her_answer_cites_hr(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "alice")
    page.locator("#chat-profiles").click()
    expect(page.locator('[data-test="select-item:hr-desk"]')).to_be_visible()
    expect(page.locator('[data-test="select-item:office"]')).to_be_visible()
    shots(page, "access-3-alice-persona-menu")
    page.locator('[data-test="select-item:office"]').click()  # the current one: the menu closes
    expect(page.locator('[data-test="select-item:hr-desk"]')).to_have_count(0)
    ask(page, A.QUESTION)
    answer = wait_answer(page, 0)
    expect(answer).to_contain_text(A.CODE)
    assert A.HR_PDF in answer.inner_text() or A.HR_MD in answer.inner_text()
    expect(page.locator(".step").filter(has_text=WITHHELD)).to_have_count(0)
    answer.locator("a.element-link").filter(has_text=re.compile("source 1", re.I)).first.click()
    expect(page.locator("#side-view-content canvas").first).to_be_visible(timeout=30_000)  # the hr PDF rendered
    page.wait_for_timeout(1500)  # the panel's slide-in
    shots(page, "access-4-alice-answer-cites-hr")
    ctx.close()


def test_the_quota_line_after_n_questions(app, browser, shots):
    from playwright.sync_api import expect

    ctx, page = browser_login(browser, app.url, "carol")
    for i in range(A.TRIAL_QUOTA):
        ask(page, f"{A.QUESTION} ({i + 1})")
        wait_answer(page, i)
    ask(page, A.QUESTION)
    line = page.locator(".step").filter(has_text=re.compile(
        rf"You have asked your {A.TRIAL_QUOTA} questions for today; the quota resets at 00:00 UTC "
        r"\(in \d+ h \d+ min\)"))
    expect(line).to_be_visible()
    page.wait_for_timeout(1000)
    answers = page.locator("[data-step-type='assistant_message']").filter(has_text=re.compile("Source 1"))
    expect(answers).to_have_count(A.TRIAL_QUOTA)  # no answer for the refused question
    shots(page, "access-5-quota-reached")
    ctx.close()

"""kbchat.ui.access without a server: the personas a user sees and may select, the bases a question
searches, which cited passages a reviewer may see, the quota (admins exempt unless configured) and its
line in the five languages; the review card withholds a passage the reviewer may not read."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from kbchat.messages import t
from kbchat.personas import load_personas
from kbchat.records.access import Access, Quota
from kbchat.records.accounts import Accounts
from kbchat.records.database import open_database
from kbchat.records.history import History
from kbchat.sharing.store import SharedQA
from kbchat.ui import access
from kbchat.ui.review import record_text
from tests.fixtures.access_app import PERSONAS


@pytest.fixture
def core(settings):
    """The parts of a Core the access questions use, on a real SQLite database: boss (admin), alice in hr,
    bob in no group; base hr readable by hr."""
    settings.knowledge_dir.joinpath("hr").mkdir(parents=True)
    db = open_database(settings)
    accounts = Accounts(db)
    accounts.add("boss", "boss-password-1", role="admin")
    for name in ("alice", "bob"):
        accounts.add(name, f"{name}-password-1")
    acc = Access(db)
    acc.add_group("hr")
    acc.add_member("alice", "hr")
    acc.set_base_access("hr", read=["group:hr"])
    return SimpleNamespace(settings=settings, accounts=accounts, access=acc, history=History(db),
                           personas=load_personas(PERSONAS, bases=["default", "hr"]))


def test_personas_limited_to_a_group(core):
    assert [p.id for p in access.visible_personas(core, "bob")] == ["office"]
    assert [p.id for p in access.visible_personas(core, "alice")] == ["office", "hr-desk"]
    assert [p.id for p in access.visible_personas(core, "boss")] == ["office", "hr-desk"]
    assert access.choose_persona(core, "bob", "hr-desk") == ("office", True)     # refused: the default
    assert access.choose_persona(core, "alice", "hr-desk") == ("hr-desk", False)
    assert access.choose_persona(core, "bob", "no-such") == ("office", False)    # unknown: not a refusal
    assert access.choose_persona(core, None, "hr-desk") == ("office", True)


def test_bases_searched_and_the_withheld_line_names_no_base(core):
    assert access.searchable_bases(core, "bob", ["default", "hr"]) == (["default"], ["hr"])
    assert access.searchable_bases(core, "alice", ["default", "hr"]) == (["default", "hr"], [])
    assert access.searchable_bases(core, None, ["default", "hr"]) == ([], ["default", "hr"])
    for lang in ("en", "zh-TW", "zh-CN", "ja", "ko"):
        line = access.withheld_line(lang, ["hr"], 2)
        assert "1" in line and "2" in line and "hr" not in line
    # a change applies to the next question
    core.access.set_base_access("hr", read=["group:hr", "user:bob"])
    assert access.searchable_bases(core, "bob", ["default", "hr"]) == (["default", "hr"], [])


def test_managed_bases(core):
    assert access.managed_bases(core, "bob") == []
    assert access.managed_bases(core, "boss") == ["default", "hr"]
    core.access.set_base_access("hr", manage=["user:bob"])
    assert access.managed_bases(core, "bob") == []           # he manages hr but may not read it
    core.access.set_base_access("hr", read=["group:hr", "user:bob"])
    assert access.managed_bases(core, "bob") == ["hr"]
    core.access.set_base_access("default", manage=["group:hr"])
    assert access.managed_bases(core, "alice") == ["default"]


def test_quota_admins_exempt_unless_configured(core):
    core.settings.quota_questions_per_day = 1
    assert access.take_question(core, "bob").allowed
    q = access.take_question(core, "bob")
    assert not q.allowed and q.limit == 1 and q.used == 1
    assert access.take_question(core, "boss") is None          # admins: no quota by default
    core.settings.quota_admins = True
    assert access.take_question(core, "boss").allowed
    assert not access.take_question(core, "boss").allowed
    core.settings.quota_questions_per_day = None
    assert access.take_question(core, "bob") is None           # no limit set


def test_quota_line_in_five_languages():
    q = Quota(allowed=False, limit=3, used=3, resets_at=datetime(2026, 12, 5, tzinfo=timezone.utc))
    now = datetime(2026, 12, 4, 18, 47, 30, tzinfo=timezone.utc)
    assert access.quota_line("en", q, now) == ("You have asked your 3 questions for today; the quota resets at "
                                               "00:00 UTC (in 5 h 13 min).")
    for lang in ("zh-TW", "zh-CN", "ja", "ko"):
        line = access.quota_line(lang, q, now)
        assert "3" in line and "00:00" in line and "5" in line and "13" in line and "questions" not in line
    assert "(in 0 h 1 min)" in access.quota_line("en", q, datetime(2026, 12, 4, 23, 59, 30, tzinfo=timezone.utc))


def test_review_card_withholds_what_the_reviewer_may_not_read(core):
    record = SharedQA(user="alice", persona_id="office", persona_prompt="", question="Code word?",
                      answer="It is the code word [1].", sources=[
                          {"n": 1, "file": "hr-salary-bands.pdf", "page": 1, "text": "The code word is QUOKKA.",
                           "collection": "kb-hr"},
                          {"n": 2, "file": "office-handbook.pdf", "page": 2, "text": "Salary slips.",
                           "collection": core.settings.shared_collection},
                          {"n": 3, "file": "old.pdf", "page": 1, "text": "Shared before access control."}],
                      model="stub", settings={}, answer_key="a1")
    bob = record_text(record, 1, "en", access.source_check(core, "bob"))
    assert "QUOKKA." not in bob and "hr-salary-bands.pdf" not in bob and "old.pdf" not in bob
    assert bob.count(t("en", "review_withheld")) == 2 and "Salary slips" in bob
    boss = record_text(record, 1, "en", access.source_check(core, "boss"))
    assert "hr-salary-bands.pdf" in boss and "old.pdf" in boss and t("en", "review_withheld") not in boss

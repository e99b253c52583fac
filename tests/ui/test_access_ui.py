"""Access control enforced by the real app (`chainlit run app.py`), tried directly over HTTP and the socket,
on both stores (the embedded store with SQLite, and PostgreSQL): base `hr` is readable by group hr only
(tests/fixtures/access_app.py). Bob (no group) never gets an hr passage or file name in an answer (LLM stub
or search-only), his top k is full, the hr routes answer 404 to him, a persona limited to hr is neither
listed nor selectable for him; alice (hr) gets the hr passages and files; an access change applies to the
next question without a restart; carol's N+1st question of the day is refused with one line."""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from kbchat.documents.passages import file_hash
from tests.browser.conftest import login
from tests.fixtures import access_app as A
from tests.fixtures.appserver import App

pytestmark = [pytest.mark.slow, pytest.mark.stub(per_test=True)]

SOURCE = re.compile(r"Source \d+ — (.+?), ")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(request, tmp_path_factory, stub):
    """One app per store: users and access set with the CLI before it starts (in PostgreSQL for the second)."""
    db_url = None
    if request.param == "postgres":
        from tests.conftest import new_pg_database

        db_url = new_pg_database(request.getfixturevalue("pg_server"))
    env = {"KBCHAT_PERSONAS_DIR": str(A.PERSONAS), "KBCHAT_QUOTA_QUESTIONS_PER_DAY": "50"}
    if db_url:
        env["KBCHAT_DATABASE_URL"] = db_url
    old = os.environ.get("KBCHAT_DATABASE_URL")
    if db_url:  # the CLI that adds the users (tests.fixtures.appserver.add_users) writes to the same database
        os.environ["KBCHAT_DATABASE_URL"] = db_url
    try:
        running = App(tmp_path_factory.mktemp(f"access-{request.param}"), stub.base_url, admins=("boss",),
                      users=("alice", "bob", "carol"), pdfs={A.HANDBOOK: A.HANDBOOK_PAGES},
                      before_start=A.prepare(db_url), env=env)
    finally:
        if old is None:
            os.environ.pop("KBCHAT_DATABASE_URL", None)
        else:
            os.environ["KBCHAT_DATABASE_URL"] = old
    running.db_url = db_url
    yield running
    running.stop()


@pytest.fixture(scope="module")
def facts() -> dict:
    """What one test found for the next ones (within one app)."""
    return {}


def _cookie(client: httpx.Client) -> str:
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def _chat(app, name: str, questions: list[str], *, profile: str = "office", before=None) -> dict:
    """As ``name`` over the socket: connect with ``profile``, ask ``questions`` one by one; the texts of the
    messages received (all, and per question) and the Sources' element URLs."""
    from tests.ui.test_load import Chat

    cookie = _cookie(login(app.url, name))

    async def go():
        chat = Chat(app.url, cookie=cookie, profile=profile)
        await chat.connect()
        # on_chat_start has ended: its task_end would otherwise end the first question's wait
        await asyncio.wait_for(chat.idle.wait(), 60)
        per = []
        try:
            for q in questions:
                if before is not None:
                    before(q)
                _, msgs = await chat.send(q)
                per.append([m.get("output", "") for m in msgs])
            await asyncio.sleep(0.3)
        finally:
            await chat.close()
        return {"all": [m.get("output", "") for m in chat.messages.values()], "per": per,
                "urls": [e.get("url") or "" for e in chat.elements]}

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result(300)


def _answer(texts: list[str]) -> str:
    found = [t for t in texts if "Source 1" in t]
    assert found, texts
    return found[-1]


def _llm_saw(stub) -> str:
    return str(stub.requests)


def test_bob_never_gets_an_hr_passage_and_his_top_k_is_full(app, stub, facts):
    out = _chat(app, "bob", [A.QUESTION, "And the salary review meeting code?"])
    for texts in out["per"]:
        answer = _answer(texts)
        assert A.CODE not in answer and A.HR_PDF not in answer and A.HR_MD not in answer, answer
        assert SOURCE.findall(answer) == [A.HANDBOOK] * A.K, answer  # k hits, all from what he may read
    assert A.CODE not in _llm_saw(stub) and A.HR_PDF not in _llm_saw(stub)  # never sent to the model either
    assert stub.requests, "the stub answered"
    withheld = [t for t in out["all"] if "left out of this search" in t]
    assert withheld == ["_Knowledge bases not open to you were left out of this search: 1 of this persona's 2._"]
    assert not any("/kbchat/kb/hr/" in u for u in out["urls"]), out["urls"]
    assert all(u.startswith("/kbchat/pdf/") for u in out["urls"]) and out["urls"]
    facts["shared_urls"] = out["urls"]


def test_bob_search_only_answers_hold_no_hr_passage(app, stub):
    stub.stop()  # the LLM is down: the chat shows the passages found
    out = _chat(app, "bob", [A.QUESTION])
    answer = _answer(out["per"][0])
    assert "search-only answer" in answer, answer
    assert A.CODE not in answer and A.HR_PDF not in answer and A.HR_MD not in answer, answer
    assert SOURCE.findall(answer) == [A.HANDBOOK] * A.K, answer


def test_alice_gets_the_hr_passages_and_files(app, stub, facts):
    out = _chat(app, "alice", [A.QUESTION])
    answer = _answer(out["per"][0])
    assert A.CODE in answer and (A.HR_PDF in answer or A.HR_MD in answer), answer
    assert not any("left out of this search" in t for t in out["all"])
    hr_urls = [u for u in out["urls"] if u.startswith("/kbchat/kb/hr/")]
    assert hr_urls, out["urls"]
    facts["hr_urls"] = hr_urls


def test_hr_routes_answer_404_to_bob_and_anonymous_and_serve_alice(app, facts):
    doc = file_hash(A.hr_pdf(app.root))
    urls = [f"/kbchat/kb/hr/{doc}", *facts["hr_urls"]]  # the file, and each cited passage (highlight or text)
    assert any("?passage=" in u for u in urls)
    alice, bob = login(app.url, "alice"), login(app.url, "bob")
    for url in urls:
        r = alice.get(url)
        assert r.status_code == 200, (url, r.status_code)
        assert r.content.startswith(b"%PDF") or A.CODE in r.text, url
        r = bob.get(url)
        assert r.status_code == 404 and A.CODE.encode() not in r.content, (url, r.status_code)
        assert httpx.get(app.url + url, timeout=30).status_code == 401
    # an unknown document of the base looks the same to bob as a real one
    assert bob.get(f"/kbchat/kb/hr/{'0' * 64}").status_code == 404


def test_access_changes_apply_to_the_next_question_without_a_restart(app, stub, facts):
    """bob is given hr, then it is taken back; the default base is closed to him, then opened again."""
    bob = login(app.url, "bob")
    doc = file_hash(A.hr_pdf(app.root))
    A.cli(app.root, "kb", "access", "hr", "--read", "hr,user:bob", db_url=app.db_url)
    try:
        answer = _answer(_chat(app, "bob", [A.QUESTION])["per"][0])
        assert A.CODE in answer, answer
        assert bob.get(f"/kbchat/kb/hr/{doc}").status_code == 200
    finally:
        A.cli(app.root, "kb", "access", "hr", "--read", "hr", db_url=app.db_url)
    answer = _answer(_chat(app, "bob", [A.QUESTION])["per"][0])
    assert A.CODE not in answer, answer
    assert bob.get(f"/kbchat/kb/hr/{doc}").status_code == 404
    # the default base's route (/kbchat/pdf/<hash>) checks the same rule
    shared = facts["shared_urls"][0]
    assert bob.get(shared).status_code == 200
    A.cli(app.root, "kb", "access", "default", "--read", "hr", db_url=app.db_url)
    try:
        assert bob.get(shared).status_code == 404
        assert login(app.url, "alice").get(shared).status_code == 200
    finally:
        A.cli(app.root, "kb", "access", "default", "--read", "everyone", db_url=app.db_url)
    assert bob.get(shared).status_code == 200


def test_a_persona_limited_to_hr_is_neither_listed_nor_selectable_for_bob(app, stub):
    def profiles(name):
        r = login(app.url, name).get("/project/settings", params={"language": "en-US"})
        assert r.status_code == 200
        return [p["name"] for p in r.json()["chatProfiles"]]

    assert profiles("bob") == ["office"]
    assert sorted(profiles("alice")) == ["hr-desk", "office"]
    assert sorted(profiles("boss")) == ["hr-desk", "office"]  # admins see every persona
    out = _chat(app, "bob", [A.QUESTION], profile="hr-desk")
    assert "The persona you chose is not available to you; this chat uses Office assistant." in out["all"]
    answer = _answer(out["per"][0])
    assert SOURCE.findall(answer) == [A.HANDBOOK] * A.K, answer  # the default persona's search, not hr-desk's
    assert A.CODE not in answer
    # alice may select it: it searches hr only
    out = _chat(app, "alice", [A.QUESTION], profile="hr-desk")
    assert not any("not available to you" in t for t in out["all"])
    assert set(SOURCE.findall(_answer(out["per"][0]))) <= {A.HR_PDF, A.HR_MD}


def test_bob_cannot_list_the_hr_base(app):
    out = _chat(app, "bob", ["/kb hr", "/kb"])
    assert out["all"].count("Only administrators can manage knowledge bases.") == 2, out["all"]
    assert not any(A.HR_PDF in t or A.HR_MD in t for t in out["all"])


def test_the_quota_refuses_the_next_question_with_one_line(app, stub):
    seen = []
    out = _chat(app, "carol", [A.QUESTION] * (A.TRIAL_QUOTA + 1), before=lambda q: seen.append(len(stub.requests)))
    for texts in out["per"][:A.TRIAL_QUOTA]:
        assert "Source 1" in _answer(texts)
    last = out["per"][-1]
    assert len(last) == 1, last
    assert re.fullmatch(rf"You have asked your {A.TRIAL_QUOTA} questions for today; the quota resets at 00:00 UTC "
                        r"\(in \d+ h \d+ min\)\.", last[0]), last
    assert len(stub.requests) == seen[-1]  # no LLM call for the refused question
    # the count is in the database: a new chat is refused too, another user is not
    assert _chat(app, "carol", [A.QUESTION])["per"][0][0].startswith("You have asked your 2 questions")
    assert "Source 1" in _answer(_chat(app, "bob", [A.QUESTION])["per"][0])


def test_a_managers_kb_changes_and_an_admins_are_audited(app, tmp_path):
    """carol manages the default base (not hr): /kb lists it alone, /kb hr is refused, her /kb add works;
    boss creates a base. `kbchat audit` lists both with who and the client address, never a passage."""
    import json

    from tests.conftest import make_pdf
    from tests.ui.test_load import Chat

    A.cli(app.root, "kb", "access", "default", "--manage", "user:carol", db_url=app.db_url)
    pdf = make_pdf(tmp_path / "carol-notes.pdf", ["Carol's notes: the staff kitchen closes at 6 pm."]).read_bytes()

    async def go(name, steps):
        cookie = _cookie(login(app.url, name))
        texts = []
        async with httpx.AsyncClient(timeout=60) as http:
            chat = Chat(app.url, cookie=cookie, profile="office")
            await chat.connect()
            await asyncio.wait_for(chat.idle.wait(), 60)
            try:
                for text, upload in steps:
                    ids = [await chat.upload(http, "carol-notes.pdf", pdf)] if upload else []
                    _, msgs = await chat.send(text, ids)
                    texts += [m.get("output", "") for m in msgs]
            finally:
                await chat.close()
        return texts

    def run(name, steps):
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go(name, steps)).result(300)

    try:
        carol = run("carol", [("/kb", False), ("/kb hr", False), ("/kb add default", True)])
        assert any("**Knowledge bases** (1)" in t and "default" in t for t in carol), carol
        assert "Only administrators can manage knowledge bases." in carol
        assert any("Added **carol-notes.pdf** to knowledge base **default**" in t for t in carol), carol
        assert not any(A.HR_PDF in t or A.HR_MD in t for t in carol)
        boss = run("boss", [("/kb create audited Audited base", False)])
        assert any("Created knowledge base **audited**" in t for t in boss), boss
    finally:
        A.cli(app.root, "kb", "access", "default", "--manage", "", db_url=app.db_url)
    lines = [json.loads(x) for x in A.cli(app.root, "audit", "--action", "kb.*", "--json",
                                          db_url=app.db_url).stdout.splitlines() if x.strip()]
    added = [x for x in lines if x["action"] == "kb.add" and x["user_identifier"] == "carol"]
    created = [x for x in lines if x["action"] == "kb.create" and x["user_identifier"] == "boss"]
    assert len(added) == 1 and added[0]["target"] == "default" and added[0]["address"] == "127.0.0.1", lines
    assert added[0]["detail"]["documents"] == ["carol-notes.pdf"]
    assert len(created) == 1 and created[0]["target"] == "audited" and created[0]["address"] == "127.0.0.1"
    assert "staff kitchen" not in json.dumps(lines)  # never a passage's text


def test_a_shared_answer_keeps_its_collections_and_a_review_decision_is_audited(app):
    import json

    from tests.ui.test_load import Chat

    async def act(http, cookie, chat, name, payload, for_id):
        r = await http.post("/project/action", headers={"Cookie": cookie}, json={
            "sessionId": chat.session_id, "action": {"name": name, "payload": payload, "id": f"x-{name}",
                                                      "forId": for_id}})
        assert r.status_code == 200, r.text
        return r

    async def go():
        async with httpx.AsyncClient(base_url=app.url, timeout=60) as http:
            bob = _cookie(login(app.url, "bob"))
            chat = Chat(app.url, cookie=bob, profile="office")
            await chat.connect()
            await asyncio.wait_for(chat.idle.wait(), 60)
            try:
                _, msgs = await chat.send(A.QUESTION)
                answer_id = [m for m in msgs if "Source 1" in m.get("output", "")][-1]["id"]
                await act(http, bob, chat, "share_qa", {"answer_id": answer_id}, answer_id)
            finally:
                await chat.close()
            records = [json.loads(x) for x in A.cli(app.root, "shared", "list", "--json", "--user", "bob",
                                                    db_url=app.db_url).stdout.splitlines() if x.strip()]
            assert len(records) == 1, records
            boss = _cookie(login(app.url, "boss"))
            chat = Chat(app.url, cookie=boss, profile="office")
            await chat.connect()
            await asyncio.wait_for(chat.idle.wait(), 60)
            try:
                await chat.send("/review")
                await act(http, boss, chat, "review_approve", {"id": records[0]["id"]}, "x")
            finally:
                await chat.close()
            return records[0]

    with ThreadPoolExecutor(1) as pool:
        record = pool.submit(asyncio.run, go()).result(300)
    colls = {s.get("collection") for s in record["sources"]}
    assert colls and None not in colls and not any(c.startswith("kb-hr") for c in colls), record["sources"]
    lines = [json.loads(x) for x in A.cli(app.root, "audit", "--action", "review.*", "--json",
                                          db_url=app.db_url).stdout.splitlines() if x.strip()]
    assert [(x["action"], x["user_identifier"], x["target"], x["address"]) for x in lines] == [
        ("review.approve", "boss", record["id"], "127.0.0.1")], lines

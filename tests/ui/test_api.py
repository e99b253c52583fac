"""kbchat as a service (issue 24), driven against the real app (`chainlit run app.py`) with the official
`openai` client (streamed and not) and LangChain's ChatOpenAI, the LLM being the stub: answers from the
persona's bases with citations at the right file and page, follow-ups, /v1/models per user, access (a key of
a user outside group hr gets none of hr's passages by chat, search, citation URL or export), 401/403/429,
hostile bodies, an API upload cited by the next question, an API sheet import in the API export, Share of an
API answer, the answer's thread in the user's history labelled API, and the audit log.

The setting is tests/fixtures/access_app.py: base `hr` readable by group hr (alice), the default base an
office handbook; bob is in no group; boss is an admin."""

from __future__ import annotations

import io
import json
import shutil
import time

import httpx
import pymupdf
import pytest

from kbchat.records.access import Access
from kbchat.records.database import Database, default_url
from kbchat.records.history import History
from kbchat.records.keys import ApiKeys
from kbchat.records.personas import PersonaRecords
from tests.conftest import make_pdf
from tests.fixtures import access_app as A
from tests.fixtures.appserver import App

pytestmark = [pytest.mark.slow, pytest.mark.stub(per_test=True)]

RATE = 40
UPLOAD = "api-upload-notes.pdf"
UPLOAD_WORD = "ZEBRAFINCH42"
UPLOAD_PAGES = ["Parking notes. Visitors park in lot B.",
                f"Bicycle storage notes. The bicycle room code is {UPLOAD_WORD}. Ask reception for a badge."]


@pytest.fixture(scope="module")
def app(tmp_path_factory, stub):
    root = tmp_path_factory.mktemp("api")
    personas = shutil.copytree(A.PERSONAS, root / "personas")  # the API writes personas: a copy of the fixtures
    env = {"KBCHAT_PERSONAS_DIR": str(personas), "KBCHAT_API_RATE_PER_MINUTE": str(RATE)}
    running = App(root, stub.base_url, admins=("boss",), users=("alice", "bob", "carol"),
                  pdfs={A.HANDBOOK: A.HANDBOOK_PAGES}, before_start=A.prepare(), env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def db(app):
    d = Database(default_url(app.root / "data"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def keys(db) -> dict:
    """One key per purpose, made as `kbchat keys create` does (records/keys.py, same database)."""
    k = ApiKeys(db)
    made = {
        "alice": k.create("alice", scopes="chat,search")[0],
        "bob": k.create("bob", scopes="chat,search,knowledge,dataset")[0],
        "boss": k.create("boss", scopes="chat,search,knowledge,dataset")[0],
        "search_only": k.create("alice", scopes="search")[0],
        "rate": k.create("carol", scopes="chat,search")[0],
        "quota": k.create("carol", scopes="chat")[0],
        "hostile": k.create("bob", scopes="chat")[0],
    }
    gone, rec = k.create("alice")
    k.revoke(rec.id)
    made["revoked"] = gone
    old, rec = k.create("alice", expires="1m")
    with db.begin() as c:
        c.exec_driver_sql(f"UPDATE api_keys SET expires_at = '2001-01-01T00:00:00+00:00' WHERE id = '{rec.id}'")
    made["expired"] = old
    return made


def _openai(app, key: str):
    import openai

    return openai.OpenAI(base_url=app.url + "/v1", api_key=key, max_retries=0, timeout=60)


def _api(app, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=app.url, timeout=60,
                        headers={"Authorization": f"Bearer {key}"} if key else {})


def _page_text(app, file: str, page: int) -> str:
    path = next(p for p in (app.root / "knowledge").rglob(file))
    with pymupdf.open(path) as doc:
        return " ".join(doc[page - 1].get_text().split())


def _check_citations_point_at_their_page(app, citations: list[dict]) -> None:
    assert citations
    for ci in citations:
        assert set(ci) >= {"n", "file", "page", "passage_id", "url", "text"}
        if ci["file"].endswith(".pdf"):
            assert " ".join(ci["text"].split())[:40] in _page_text(app, ci["file"], ci["page"]), ci


# ---------------------------------------------------------------- models and answers


def test_models_lists_exactly_the_personas_each_user_may_use(app, keys):
    assert sorted(m.id for m in _openai(app, keys["alice"]).models.list()) == ["hr-desk", "office"]
    assert [m.id for m in _openai(app, keys["bob"]).models.list()] == ["office"]
    assert sorted(m.id for m in _openai(app, keys["boss"]).models.list()) == ["hr-desk", "office"]


def test_answer_with_citations_at_the_right_file_and_page(app, keys, stub, db):
    r = _openai(app, keys["alice"]).chat.completions.create(
        model="hr-desk", messages=[{"role": "user", "content": A.QUESTION}])
    text = r.choices[0].message.content
    extra = r.model_extra
    assert "[1]" in text and r.model == "hr-desk" and r.choices[0].finish_reason == "stop"
    cites = extra["citations"]
    assert " ".join(cites[0]["text"].split())[:20] in text  # the stub quotes passage [1]
    assert cites[0]["n"] == 1 and cites[0]["file"] in (A.HR_PDF, A.HR_MD) and A.CODE in cites[0]["text"]
    assert all(c["base"] == "hr" for c in cites)
    _check_citations_point_at_their_page(app, cites)
    assert extra["kbchat"]["search_only"] is False
    # the persona's voice reached the LLM, with the passages
    system = stub.last_messages[0]["content"]
    assert "HR questions" in system
    # the call is a thread of alice's, labelled API, whose answer record is kept (Share, usage)
    history = History(db)
    thread = history.get_thread(extra["kbchat"]["thread_id"])
    assert thread["userIdentifier"] == "alice" and thread["name"].startswith("API · ") and "api" in thread["tags"]
    assert [s["type"] for s in thread["steps"]] == ["user_message", "assistant_message"]
    rec = history.answer(extra["kbchat"]["answer_id"])[1]
    assert rec["via"] == "api" and rec["user"] == "alice" and rec["sources"][0]["file"] == cites[0]["file"]


def test_streamed_answer_ends_with_citations_and_done(app, keys):
    stream = _openai(app, keys["alice"]).chat.completions.create(
        model="office", stream=True, messages=[{"role": "user", "content": A.QUESTION}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    cites = last.model_extra["citations"]
    assert "[1]" in text and " ".join(cites[0]["text"].split())[:20] in text
    assert any(A.CODE in c["text"] for c in cites)  # alice reads hr through the default persona too
    _check_citations_point_at_their_page(app, cites)
    # the raw stream: SSE data lines, the last one [DONE]
    with _api(app, keys["alice"]) as c:
        raw = c.post("/v1/chat/completions", json={"model": "office", "stream": True,
                                                   "messages": [{"role": "user", "content": A.QUESTION}]})
    events = [line for line in raw.text.split("\n\n") if line]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_follow_up_uses_the_conversation(app, keys, stub):
    client = _openai(app, keys["alice"])
    first = client.chat.completions.create(model="hr-desk", messages=[{"role": "user", "content": A.QUESTION}])
    answer = first.choices[0].message.content
    client.chat.completions.create(model="hr-desk", messages=[
        {"role": "user", "content": A.QUESTION}, {"role": "assistant", "content": answer},
        {"role": "user", "content": "And when is the review meeting?"}])
    sent = stub.last_messages
    assert [m["role"] for m in sent[-3:]] == ["user", "assistant", "user"]
    assert sent[-3]["content"] == A.QUESTION and sent[-2]["content"] == answer
    assert "review meeting" in sent[-1]["content"]


def test_langchain_chat_openai_with_base_url_at_kbchat(app, keys):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=app.url + "/v1", api_key=keys["alice"], model="hr-desk", max_retries=0,
                     temperature=0.1, max_tokens=200)
    reply = llm.invoke(A.QUESTION)
    same = _openai(app, keys["alice"]).chat.completions.create(
        model="hr-desk", messages=[{"role": "user", "content": A.QUESTION}])
    assert "[1]" in reply.content and reply.content == same.choices[0].message.content
    streamed = "".join(part.content for part in llm.stream(A.QUESTION))
    assert streamed == reply.content


def test_search_only_answer_when_the_llm_is_down(app, keys, stub):
    stub.mode = "500"
    r = _openai(app, keys["alice"]).chat.completions.create(
        model="hr-desk", messages=[{"role": "user", "content": A.QUESTION}])
    assert r.model_extra["kbchat"]["search_only"] is True
    cites = r.model_extra["citations"]
    assert cites and all(c["file"] in (A.HR_PDF, A.HR_MD) for c in cites)


# ---------------------------------------------------------------- access


def test_a_user_outside_the_group_gets_none_of_its_passages(app, keys):
    # chat: bob's answer never stands on hr
    r = _openai(app, keys["bob"]).chat.completions.create(
        model="office", messages=[{"role": "user", "content": A.QUESTION}])
    assert A.CODE not in r.choices[0].message.content
    assert r.model_extra["citations"] and all(c["file"] == A.HANDBOOK for c in r.model_extra["citations"])
    assert r.model_extra["kbchat"]["withheld_bases"] == 1
    # a persona limited to hr is no model for him (the same line as an unknown one)
    with _api(app, keys["bob"]) as c:
        hidden = c.post("/v1/chat/completions", json={"model": "hr-desk",
                                                      "messages": [{"role": "user", "content": "hi"}]})
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
        # search: asking for hr by name gives nothing of it
        found = c.post("/api/v1/search", json={"question": A.QUESTION, "bases": ["hr", "default"], "k": 10})
        assert found.status_code == 200 and found.json()["bases"] == ["default"]
        assert found.json()["hits"] and all(h["file"] == A.HANDBOOK for h in found.json()["hits"])
        names = [b["name"] for b in c.get("/api/v1/bases").json()["bases"]]
        assert "default" in names and "hr" not in names
    # citation URL: alice's hr citation opens for her key, not for bob's (nor without a key)
    alice = _openai(app, keys["alice"]).chat.completions.create(
        model="hr-desk", messages=[{"role": "user", "content": A.QUESTION}])
    url = next(c["url"] for c in alice.model_extra["citations"] if c["file"] == A.HR_PDF)
    with _api(app, keys["alice"]) as c:
        mine = c.get(url)
        assert mine.status_code == 200 and mine.headers["content-type"] == "application/pdf"
    with _api(app, keys["bob"]) as c:
        assert c.get(url).status_code == 404
    assert httpx.get(url, timeout=30).status_code in (401, 404)
    # the dataset export: bob's key has the scope but he is no admin
    with _api(app, keys["bob"]) as c:
        r = c.get("/api/v1/shared/export")
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"


def test_search_finds_hr_for_alice(app, keys):
    with _api(app, keys["alice"]) as c:
        r = c.post("/api/v1/search", json={"question": A.QUESTION, "k": 3})
    hits = r.json()["hits"]
    assert r.status_code == 200 and {"hr", "default"} <= set(r.json()["bases"])
    assert hits[0]["file"] in (A.HR_PDF, A.HR_MD) and A.CODE in hits[0]["text"] and hits[0]["score"] > 0


@pytest.mark.parametrize("which,code", [("revoked", "revoked_api_key"), ("expired", "expired_api_key"),
                                        ("unknown", "unknown_api_key"), (None, "missing_api_key")])
def test_bad_keys_get_401(app, keys, which, code):
    key = {"unknown": "kbk_" + "x" * 43}.get(which, keys.get(which or "", ""))
    with _api(app, key or None) as c:
        for r in (c.get("/v1/models"), c.post("/api/v1/search", json={"question": "salary"})):
            assert r.status_code == 401 and r.json()["error"]["code"] == code, r.text
            assert r.json()["error"]["type"] == "authentication_error"


ROUTES = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/api/v1/chat/completions"),
          ("POST", "/api/v1/search"), ("GET", "/api/v1/bases"), ("POST", "/api/v1/bases"),
          ("GET", "/api/v1/bases/hr/documents"), ("POST", "/api/v1/bases/hr/documents"),
          ("DELETE", "/api/v1/bases/hr/documents/hr-faq.md"), ("GET", "/api/v1/jobs/abc"),
          ("GET", "/api/v1/bases/hr/access"), ("PUT", "/api/v1/bases/hr/access"), ("GET", "/api/v1/personas"),
          ("GET", "/api/v1/personas/hr-desk"), ("PUT", "/api/v1/personas/hr-desk"),
          ("DELETE", "/api/v1/personas/hr-desk"), ("POST", "/api/v1/answers/abc/share"), ("GET", "/api/v1/shared"),
          ("POST", "/api/v1/shared/abc/review"), ("POST", "/api/v1/shared/import"), ("GET", "/api/v1/shared/export"),
          ("GET", "/api/v1/usage")]


def test_every_route_refuses_a_request_without_a_key_and_bob_gets_nothing_of_hr(app, keys):
    with _api(app, None) as c:
        for method, path in ROUTES:
            r = c.request(method, path, json={})
            assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key", (method, path)
    with _api(app, keys["bob"]) as c:  # every scope, no admin, not in hr
        for method, path in ROUTES:
            if path.startswith("/v1/") or path in ("/api/v1/search", "/api/v1/bases", "/api/v1/personas",
                                                   "/api/v1/chat/completions"):
                continue  # open to him; what they return is checked above
            r = c.request(method, path, json={})
            assert r.status_code in (403, 404), (method, path, r.status_code)
            assert A.CODE not in r.text and "salary band" not in r.text.lower(), (method, path)


def test_a_removed_users_key_gets_401(app, db):
    from kbchat.records.accounts import Accounts

    Accounts(db).add("dave", "a long password 4")
    key, _ = ApiKeys(db).create("dave")
    with _api(app, key) as c:
        assert c.get("/v1/models").status_code == 200
        Accounts(db).remove("dave")
        r = c.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unknown_user"


def test_missing_scope_gets_403(app, keys):
    import openai

    with pytest.raises(openai.PermissionDeniedError) as err:
        _openai(app, keys["search_only"]).chat.completions.create(
            model="office", messages=[{"role": "user", "content": "salary?"}])
    assert "'chat' scope" in err.value.message
    with _api(app, keys["alice"]) as c:  # no knowledge scope
        assert c.get("/api/v1/bases/hr/documents").json()["error"]["code"] == "missing_scope"


def test_rate_limit_gets_429_with_retry_after(app, keys):
    with _api(app, keys["rate"]) as c:
        codes = [c.get("/v1/models").status_code for _ in range(RATE)]
        over = c.get("/v1/models")
    assert codes == [200] * RATE
    assert over.status_code == 429 and 1 <= int(over.headers["Retry-After"]) <= 60
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    with _api(app, keys["alice"]) as c:  # another key is not slowed
        assert c.get("/v1/models").status_code == 200


def test_the_users_question_quota_gets_429_with_retry_after(app, keys):
    import openai

    client = _openai(app, keys["quota"])
    for _ in range(A.TRIAL_QUOTA):  # carol's group allows 2 questions a day
        assert client.chat.completions.create(model="office", messages=[{"role": "user", "content": "salary?"}])
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="office", messages=[{"role": "user", "content": "salary?"}])
    assert err.value.code == "quota_exceeded"
    assert 0 < int(err.value.response.headers["Retry-After"]) <= 86400


def test_reasoning_comes_as_reasoning_content(app, keys, stub):
    from tests.stubs.llm import REASONING

    stub.mode = "reasoning_content"
    client = _openai(app, keys["alice"])
    r = client.chat.completions.create(model="office", messages=[{"role": "user", "content": A.QUESTION}])
    assert r.choices[0].message.model_extra["reasoning_content"] == REASONING
    assert "[1]" in r.choices[0].message.content and REASONING not in r.choices[0].message.content
    chunks = list(client.chat.completions.create(model="office", stream=True,
                                                 messages=[{"role": "user", "content": A.QUESTION}]))
    thought = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert thought == REASONING


def test_hostile_bodies_one_json_error_each_and_the_server_keeps_serving(app, keys):
    q = [{"role": "user", "content": "salary?"}]
    cases = {
        "huge": (413, "body_too_large", dict(content=b'{"model": "office", "messages": [' + b" " * (2 << 20) + b"]}",
                                             headers={"content-type": "application/json"})),
        "malformed": (400, "invalid_json", dict(content=b'{"model": "office", "messages": [',
                                                headers={"content-type": "application/json"})),
        "not an object": (400, "invalid_json", dict(json=["office"])),
        "wrong types": (400, "invalid_value", dict(json={"model": 5, "messages": "hello"})),
        "bad temperature": (400, "invalid_value", dict(json={"model": "office", "messages": q, "temperature": "hot"})),
        "no persona": (404, "model_not_found", dict(json={"model": "gpt-4o", "messages": q})),
        "10,000 messages": (400, "too_many_messages", dict(json={"model": "office", "messages": q * 10_000})),
        "no question": (400, "invalid_value", dict(json={"model": "office", "messages": [
            {"role": "assistant", "content": "hi"}]})),
    }
    with _api(app, keys["hostile"]) as c:
        for name, (status, code, kw) in cases.items():
            r = c.post("/v1/chat/completions", **kw)
            body = r.json()
            assert r.status_code == status and body["error"]["code"] == code, (name, r.status_code, r.text)
            assert isinstance(body["error"]["message"], str) and "\n" not in body["error"]["message"], name
        # the REST side answers in the same shape (FastAPI's own validation included)
        r = c.post("/api/v1/search", json={"question": ["x"], "k": "many"})
        assert r.status_code == 403  # the hostile key has no search scope: checked before the body
    with _api(app, keys["alice"]) as c:
        r = c.post("/api/v1/search", json={"question": ["x"], "k": "many"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert c.get("/api/v1/nowhere").json()["error"]["type"] == "not_found_error"
    ok = _openai(app, keys["alice"]).chat.completions.create(model="office", messages=q)
    assert ok.choices[0].message.content


# ---------------------------------------------------------------- knowledge and dataset


def _wait_job(c: httpx.Client, job: dict) -> dict:
    for _ in range(240):
        job = c.get(f"/api/v1/jobs/{job['id']}").json()
        if job["status"] != "running":
            return job
        time.sleep(0.5)
    raise AssertionError(f"upload job never ended: {job}")


def test_uploaded_document_is_cited_by_the_next_question(app, keys, db, tmp_path):
    pdf = make_pdf(tmp_path / UPLOAD, UPLOAD_PAGES)
    with _api(app, keys["bob"]) as c:  # bob manages nothing: the base is not his to change
        r = c.post("/api/v1/bases/default/documents", files={"file": (UPLOAD, pdf.read_bytes(), "application/pdf")})
        assert r.status_code == 404
    with _api(app, keys["boss"]) as c:
        bad = c.post("/api/v1/bases/default/documents", files={"file": ("tool.exe", b"MZ", "application/octet-stream")})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "unsupported_type"
        r = c.post("/api/v1/bases/default/documents", files={"file": (UPLOAD, pdf.read_bytes(), "application/pdf")})
        assert r.status_code == 202 and r.json()["status"] == "running"
        job = _wait_job(c, r.json())
        assert job["status"] == "done" and job["result"]["pages"] == 2 and job["result"]["status"] == "added", job
        listed = c.get("/api/v1/bases/default/documents").json()["documents"]
        assert UPLOAD in [d["name"] for d in listed]
    r = _openai(app, keys["bob"]).chat.completions.create(
        model="office", messages=[{"role": "user", "content": "What is the bicycle room code?"}])
    assert "[1]" in r.choices[0].message.content
    cite = r.model_extra["citations"][0]
    assert cite["file"] == UPLOAD and cite["page"] == 2 and UPLOAD_WORD in cite["text"]
    assert [a["target"] for a in Access(db).audit_log(action="kb.add")] == ["default"]


def test_imported_sheet_appears_in_the_api_export_and_api_answers_can_be_shared(app, keys, db):
    sheet = "question,answer\nWhere is the payroll desk?,In room 12 [1].\nNo answer here,\n"
    with _api(app, keys["bob"]) as c:
        assert c.post("/api/v1/shared/import", files={"file": ("qa.csv", sheet.encode(), "text/csv")}
                      ).status_code == 403
    with _api(app, keys["boss"]) as c:
        r = c.post("/api/v1/shared/import", files={"file": ("qa.csv", sheet.encode(), "text/csv")})
        body = r.json()
        assert r.status_code == 200 and body["imported"] == 1 and len(body["row_errors"]) == 1, body
        assert "row 3" in body["row_errors"][0]
        approved = c.get("/api/v1/shared", params={"status": "approved"}).json()["records"]
        [rec] = [p for p in approved if p["question"] == "Where is the payroll desk?"]  # imports come approved
        assert c.post(f"/api/v1/shared/{rec['id']}/review", json={"status": "rejected"}).json()["status"] == "rejected"
        rejected = c.get("/api/v1/shared/export", params={"format": "openai"})
        assert "payroll desk" not in rejected.text
        assert c.post(f"/api/v1/shared/{rec['id']}/review", json={"status": "approved"}).json()["status"] == "approved"
        export = c.get("/api/v1/shared/export", params={"format": "openai"})
        assert export.status_code == 200
        lines = [json.loads(x) for x in export.text.splitlines() if x]
        assert any(m["content"] == "Where is the payroll desk?" for line in lines for m in line["messages"])
        xlsx = c.get("/api/v1/shared/export", params={"format": "xlsx", "status": "all"})
        import openpyxl

        rows = list(openpyxl.load_workbook(io.BytesIO(xlsx.content)).active.values)
        assert any(r[0] == "Where is the payroll desk?" for r in rows)
    # alice shares her own API answer (consent per answer); bob cannot share it
    r = _openai(app, keys["alice"]).chat.completions.create(
        model="hr-desk", messages=[{"role": "user", "content": A.QUESTION}])
    answer_id = r.model_extra["kbchat"]["answer_id"]
    with _api(app, keys["bob"]) as c:
        assert c.post(f"/api/v1/answers/{answer_id}/share").status_code == 404
    with _api(app, keys["alice"]) as c:
        shared = c.post(f"/api/v1/answers/{answer_id}/share").json()
        assert shared["status"] == "pending"
    with _api(app, keys["boss"]) as c:
        pending = c.get("/api/v1/shared", params={"status": "pending"}).json()["records"]
        assert any(p["answer_key"] == answer_id and p["user"] == "alice" for p in pending)
    actions = {a["action"] for a in Access(db).audit_log()}
    assert {"import", "review.rejected", "review.approved", "export", "share"} <= actions


HELPDESK = """\
id: helpdesk
icon: /public/personas/general.svg
name:
  en: Help desk
description:
  en: Office questions, for the HR group.
prompt:
  situation: You answer office questions from numbered passages.
  task: Answer briefly and cite.
starters:
  en:
    - label: Payroll
      message: Where is the payroll desk?
knowledge: [default]
visible_to: [hr]
"""


def test_admins_put_and_delete_personas_validated_like_the_files(app, keys, db):
    with _api(app, keys["bob"]) as c:  # the knowledge scope, but no admin
        r = c.put("/api/v1/personas/helpdesk", content=HELPDESK, headers={"content-type": "application/yaml"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
    with _api(app, keys["boss"]) as c:
        yaml_head = {"content-type": "application/yaml"}
        bad = c.put("/api/v1/personas/helpdesk", content=HELPDESK.replace("[default]", "[nope]"), headers=yaml_head)
        assert bad.status_code == 400 and "persona 'helpdesk': field 'knowledge': unknown knowledge base 'nope'" in \
            bad.json()["error"]["message"]
        assert c.put("/api/v1/personas/helpdesk", content="id: [", headers=yaml_head).json()["error"][
            "message"].startswith("the body is not valid YAML")
        assert c.put("/api/v1/personas/../etc", content=HELPDESK, headers=yaml_head).status_code in (400, 404)
        r = c.put("/api/v1/personas/helpdesk", content=HELPDESK, headers=yaml_head)
        assert r.status_code == 200 and r.json()["visible_to"] == ["hr"]
        assert PersonaRecords(db).get("helpdesk").status == "published"  # stored as a version in the database
        assert "office" in c.get("/api/v1/personas/office", params={"format": "yaml"}).text
        # the one default cannot go
        gone = c.delete("/api/v1/personas/office")
        assert gone.status_code == 400 and "is the default persona" in gone.json()["error"]["message"]
    assert "helpdesk" in [m.id for m in _openai(app, keys["alice"]).models.list()]  # alice is in hr
    assert "helpdesk" not in [m.id for m in _openai(app, keys["bob"]).models.list()]
    with _api(app, keys["boss"]) as c:
        assert c.delete("/api/v1/personas/helpdesk").json() == {"deleted": "helpdesk"}
        assert c.delete("/api/v1/personas/helpdesk").status_code == 404
    assert "helpdesk" not in [m.id for m in _openai(app, keys["alice"]).models.list()]


def test_admins_set_base_access_and_it_applies_to_the_next_search(app, keys, db):
    with _api(app, keys["bob"]) as c:
        assert c.get("/api/v1/bases/hr/access").status_code == 403
    with _api(app, keys["boss"]) as c:
        assert c.get("/api/v1/bases/hr/access").json()["read"] == ["group:hr"]
        bad = c.put("/api/v1/bases/hr/access", json={"read": ["group:nosuch"]})
        assert bad.status_code == 400 and "no group named nosuch" in bad.json()["error"]["message"]
        r = c.put("/api/v1/bases/hr/access", json={"read": ["group:hr", "user:bob"]})
        assert r.status_code == 200 and r.json()["read"] == ["group:hr", "user:bob"]
    with _api(app, keys["bob"]) as c:
        found = c.post("/api/v1/search", json={"question": A.QUESTION, "bases": ["hr"]}).json()
        assert found["bases"] == ["hr"] and any(A.CODE in h["text"] for h in found["hits"])
    with _api(app, keys["boss"]) as c:
        assert c.put("/api/v1/bases/hr/access", json={"read": ["hr"]}).json()["read"] == ["group:hr"]
    with _api(app, keys["bob"]) as c:
        assert c.post("/api/v1/search", json={"question": A.QUESTION, "bases": ["hr"]}).json()["hits"] == []
    assert [a["target"] for a in Access(db).audit_log(action="kb.access")][-2:] == ["hr", "hr"]


def test_usage_counts_for_admins(app, keys):
    with _api(app, keys["boss"]) as c:
        r = c.get("/api/v1/usage")
    body = r.json()
    assert r.status_code == 200 and body["by_user"]["alice"] >= 5 and body["by_user"]["carol"] == A.TRIAL_QUOTA
    assert body["by_channel"]["api"] == body["answers"] and body["search_only"] >= 1
    assert body["quota_counts"]["carol"] == A.TRIAL_QUOTA  # counted only where a quota applies
    assert body["keys"]["total"] >= len(keys) and body["keys"]["active"] < body["keys"]["total"]
    with _api(app, keys["alice"]) as c:
        assert c.get("/api/v1/usage").status_code == 403


def test_openapi_description_is_served(app):
    r = httpx.get(app.url + "/api/openapi.json", timeout=30)
    paths = r.json()["paths"]
    assert {"/v1/search", "/v1/chat/completions", "/v1/models", "/v1/shared/export"} <= set(paths)
    assert httpx.get(app.url + "/api/docs", timeout=30).status_code == 200

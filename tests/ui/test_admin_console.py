"""The admin console's sections against the real app (one app for the module): what each page shows and
what each form changes, read back through the CLI or the chat's own routes, and written to the audit log."""

from __future__ import annotations

import html
import re

import pytest

from tests.browser.conftest import login
from tests.fixtures.appserver import kbchat_cli

pytestmark = [pytest.mark.app(admins=("alice",), users=("bob",))]


@pytest.fixture(scope="module")
def alice(app):
    c = login(app.url, "alice")
    yield c
    c.close()


def post(client, app, path: str, data: dict | None = None, files=None):
    """A console POST as a browser sends it: the page's CSRF token, this site's Origin."""
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/admin").text).group(1)
    return client.post(path, data={**(data or {}), "csrf": token}, files=files, headers={"Origin": app.url},
                       follow_redirects=False)


def cli(app, *args):
    r = kbchat_cli(*args, data_dir=app.root / "data", env={"KBCHAT_KNOWLEDGE_DIR": str(app.root / "knowledge")})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_add_a_group_and_a_user_in_it_with_a_one_time_password(app, alice):
    assert post(alice, app, "/admin/groups/add", {"name": "nurses", "quota": "5"}).status_code == 303
    r = post(alice, app, "/admin/people/add", {"name": "dana", "role": "user", "groups": "nurses"})
    assert r.status_code == 200
    otp = re.search(r'id="one-time-password">([^<]+)<', r.text).group(1)
    dana = login(app.url, "dana", html.unescape(otp))  # the one-time password signs in
    dana.close()
    assert re.search(r"^dana\tuser\tpassword\tnurses\t", cli(app, "users", "list"), re.M)
    assert re.search(r"^nurses\t.*5", cli(app, "groups", "list"), re.M)
    page = alice.get("/admin/people").text
    assert 'data-user="dana"' in page and 'data-group="nurses"' in page
    audit = cli(app, "audit")
    assert re.search(r"alice\tgroup.add\tnurses\t127.0.0.1\t.*console", audit)
    assert re.search(r"alice\tuser.add\tdana\t127.0.0.1\t.*console", audit)
    assert re.search(r"alice\tgroup.member.add\tdana\t", audit)


def test_bad_input_is_one_line_and_nothing_is_made(app, alice):
    r = post(alice, app, "/admin/people/add", {"name": "has space", "role": "user"})
    assert r.status_code == 400 and 'class="error"' in r.text and "invalid user name" in r.text
    r = post(alice, app, "/admin/people/add", {"name": "erin", "groups": "no-such-group"})
    assert r.status_code == 400 and "There is no group named no-such-group" in r.text
    r = post(alice, app, "/admin/groups/add", {"name": "nurses"})
    assert r.status_code == 400 and "already exists" in r.text
    r = post(alice, app, "/admin/groups/nurses/quota", {"quota": "many"})
    assert r.status_code == 400 and "whole number" in r.text
    assert "erin" not in cli(app, "users", "list")
    assert alice.get("/admin/people").status_code == 200  # still serving


def test_groups_role_and_password_of_a_user(app, alice):
    post(alice, app, "/admin/groups/add", {"name": "doctors"})
    assert post(alice, app, "/admin/people/bob/groups", {"groups": "doctors, nurses"}).status_code == 303
    assert re.search(r"^bob\tuser\tpassword\tdoctors,nurses\t", cli(app, "users", "list"), re.M)
    assert post(alice, app, "/admin/people/bob/groups", {"groups": "doctors"}).status_code == 303
    assert re.search(r"^bob\tuser\tpassword\tdoctors\t", cli(app, "users", "list"), re.M)
    r = post(alice, app, "/admin/people/bob/password")
    otp = html.unescape(re.search(r'id="one-time-password">([^<]+)<', r.text).group(1))
    login(app.url, "bob", otp).close()
    assert post(alice, app, "/admin/people/bob/role", {"role": "admin"}).status_code == 303
    assert re.search(r"^bob\tadmin\t", cli(app, "users", "list"), re.M)
    assert post(alice, app, "/admin/people/bob/role", {"role": "user"}).status_code == 303
    r = post(alice, app, "/admin/people/alice/role", {"role": "user"})
    assert r.status_code == 400 and "your own administrator role" in r.text
    assert re.search(r"^alice\tadmin\t", cli(app, "users", "list"), re.M)
    audit = cli(app, "audit")
    assert re.search(r"alice\tuser.password\tbob\t", audit) and re.search(r"alice\tuser.role\tbob\t", audit)
    assert "otp" not in audit and otp not in audit  # never a password in the audit log


def test_remove_spells_out_what_it_deletes_then_removes(app, alice):
    post(alice, app, "/admin/people/add", {"name": "frank", "password": "frank-password-1", "groups": "nurses"})
    r = alice.get("/admin/people/frank/remove")
    assert r.status_code == 200 and "their 0 chats" in r.text and "nurses" in r.text
    assert alice.get("/admin/people/nobody/remove").status_code == 404
    assert post(alice, app, "/admin/people/frank/remove").status_code == 303
    assert "frank" not in cli(app, "users", "list")
    assert re.search(r"alice\tuser.remove\tfrank\t", cli(app, "audit"))
    r = post(alice, app, "/admin/people/alice/remove")
    assert r.status_code == 400 and "alice" in cli(app, "users", "list")


def test_quota_and_group_removal(app, alice):
    assert post(alice, app, "/admin/groups/doctors/quota", {"quota": "12"}).status_code == 303
    assert re.search(r"^doctors\t12", cli(app, "groups", "list"), re.M)
    assert post(alice, app, "/admin/groups/doctors/remove").status_code == 303
    assert "doctors" not in cli(app, "groups", "list")
    page = alice.get("/admin/people").text
    assert "Recent sign-ins" in page and re.search(r"<td>alice</td><td>signed in</td>", page)


# ---------------------------------------------------------------- knowledge


def _wait_job(client, job_id: str) -> dict:
    import time

    deadline = time.time() + 120
    while time.time() < deadline:
        state = client.get(f"/admin/jobs/{job_id}").json()
        if not state["running"]:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still running: {state}")


def test_create_a_base_and_restrict_it_to_a_group(app, alice):
    r = post(alice, app, "/admin/knowledge/create", {"name": "wards", "description": "Ward procedures."})
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/knowledge/wards")
    assert (app.root / "knowledge" / "wards" / "README.md").is_file()
    r = post(alice, app, "/admin/knowledge/create", {"name": "Bad Name"})
    assert r.status_code == 400 and 'class="error"' in r.text
    r = post(alice, app, "/admin/knowledge/wards/access", {"mode": "listed"})
    assert r.status_code == 400 and "at least one group" in r.text
    r = post(alice, app, "/admin/knowledge/wards/access", {"mode": "listed", "read_groups": "nurses",
                                                           "read_users": "bob", "manage_users": "dana"})
    assert r.status_code == 303
    assert "wards: read: group:nurses, user:bob; manage: user:dana" in cli(app, "kb", "access", "wards")
    r = post(alice, app, "/admin/knowledge/wards/access", {"mode": "listed", "read_users": "nobody"})
    assert r.status_code == 400 and "no user named nobody" in r.text
    r = post(alice, app, "/admin/knowledge/wards/access", {"mode": "listed", "read_groups": "nurses"})
    assert "wards: read: group:nurses; manage: admins" in cli(app, "kb", "access", "wards")
    page = alice.get("/admin/knowledge").text
    assert 'data-base="wards"' in page and "Ward procedures." in page
    assert re.search(r"alice\tkb.access\twards\t.*group:nurses", cli(app, "audit"))
    assert alice.get("/admin/knowledge/no-such-base").status_code == 404


def test_upload_several_files_with_progress_that_survives_a_reload(app, alice, tmp_path):
    from tests.conftest import make_pdf

    one = make_pdf(tmp_path / "triage.pdf", ["Triage colours: red means immediate care."] * 3)
    two = make_pdf(tmp_path / "handover.pdf", ["Handover uses the SBAR format.", "Situation, background."])
    files = [("files", ("triage.pdf", one.read_bytes(), "application/pdf")),
             ("files", ("handover.pdf", two.read_bytes(), "application/pdf")),
             ("files", ("../../tool.exe", b"MZ not a document", "application/octet-stream"))]
    r = post(alice, app, "/admin/knowledge/wards/upload", files=files)
    assert r.status_code == 303, r.text[:300]
    job_id = re.search(r"job=([0-9a-f]{32})", r.headers["location"]).group(1)
    state = _wait_job(alice, job_id)
    by_name = {f["name"]: f for f in state["files"]}
    assert by_name["triage.pdf"]["stage"] == "done" and by_name["triage.pdf"]["pages_done"] == 3
    assert by_name["handover.pdf"]["embedded"] == by_name["handover.pdf"]["passages"] > 0
    assert by_name["tool.exe"]["stage"] == "failed" and "was not added" in by_name["tool.exe"]["line"]
    assert "**" not in by_name["triage.pdf"]["line"]
    page = alice.get("/admin/knowledge/wards").text  # a reload shows the job as it ended, and the documents
    assert f'data-job="{job_id}"' in page and 'data-doc="triage.pdf"' in page and 'data-doc="handover.pdf"' in page
    assert re.search(r'data-doc="triage.pdf"><td>triage.pdf</td><td class="num">3</td>.*?<td>alice</td>', page, re.S)
    assert "kb-wards" in cli(app, "kb", "docs", "wards") or "triage.pdf" in cli(app, "kb", "docs", "wards")
    assert re.search(r'alice\tkb.add\twards\t.*"count": 2', cli(app, "audit"))
    assert not list((app.root / "data" / "admin-uploads").glob("*/*"))  # temporary copies are gone
    zh = alice.get(f"/admin/jobs/{job_id}", headers={"Accept-Language": "zh-TW"}).json()
    assert "未" in {f["name"]: f for f in zh["files"]}["tool.exe"]["line"]
    assert alice.get("/admin/jobs/" + "0" * 32).status_code == 404


def test_remove_a_document(app, alice):
    r = post(alice, app, "/admin/knowledge/wards/remove", {"key": "handover.pdf"})
    assert r.status_code == 303
    assert "handover.pdf" not in cli(app, "kb", "docs", "wards")
    r = post(alice, app, "/admin/knowledge/wards/remove", {"key": "nothing.pdf"})
    assert r.status_code == 400 and "no document" in r.text
    assert re.search(r"alice\tkb.remove\twards\t", cli(app, "audit"))


# ---------------------------------------------------------------- review and dataset

SHEET = ("question,answer\n"
         "How long is a night shift?,Twelve hours from 19:00.\n"
         "Who signs the handover?,The outgoing nurse in charge.\n"
         "What if a patient falls?,\n"
         "Where are the gloves?,In the store room; contact store@example.org.\n")


def test_import_a_sheet_shows_rejected_rows_in_a_table(app, alice):
    r = post(alice, app, "/admin/review/import", files={"sheet": ("ward-faq.csv", SHEET.encode(), "text/csv")})
    assert r.status_code == 200
    assert "ward-faq.csv: 3 imported, 0 duplicate(s) skipped, 1 row(s) rejected" in r.text
    row = re.search(r'<table id="import-rows">.*?<tbody><tr><td class="num">(\d+)</td><td>([^<]+)</td>', r.text, re.S)
    assert row and row.group(1) == "4" and "answer" in row.group(2)
    r = post(alice, app, "/admin/review/import", files={"sheet": ("notes.txt", b"x", "text/plain")})
    assert r.status_code == 400 and ".xlsx, .csv, .json or .jsonl" in r.text
    r = post(alice, app, "/admin/review/import", files={"sheet": ("broken.xlsx", b"not a workbook", "x")})
    assert r.status_code == 400 and 'class="error"' in r.text
    assert re.search(r'alice\tsheet.import\tward-faq.csv\t.*"imported": 3', cli(app, "audit"))


def share(app, question: str, answer: str, sources: list | None = None) -> str:
    """A pair shared as the chat's Share button stores it (pending), in the app's database."""
    from kbchat.records.database import open_database
    from kbchat.settings import Settings
    from kbchat.sharing.store import SharedQA, ShareStore

    db = open_database(Settings(data_dir=app.root / "data"))
    rec = SharedQA(user="bob", persona_id="general", question=question, answer=answer, answer_key=question,
                   sources=sources or [], model="stub")
    return ShareStore(db).share(rec).id


def test_review_queue_approve_edit_reject_skip(app, alice):
    src = [{"n": 1, "file": "triage.pdf", "page": 1, "text": "Triage colours: red means immediate care.",
            "collection": "kb-wards"},
           {"n": 2, "file": "secret.pdf", "page": 2, "text": "not for the card", "collection": "kb-nowhere"}]
    ids = [share(app, "How long is a night shift?", "Twelve hours [1].", src),
           share(app, "Who signs the handover?", "The nurse [1]."),
           share(app, "Where are the gloves?", "In the store room.")]
    page = alice.get("/admin/review").text
    first = re.search(r'id="card" data-record="([0-9a-f]+)"', page).group(1)
    assert first == ids[0] and "How long is a night shift?" in page and 'id="n-pending">3<' in page
    assert "[1] triage.pdf, page 1: “Triage colours" in page
    skipped = alice.get(f"/admin/review?skip={first}").text  # skip: the next one
    second = re.search(r'id="card" data-record="([0-9a-f]+)"', skipped).group(1)
    assert second != first and "Who signs the handover?" in skipped
    assert post(alice, app, f"/admin/review/{first}/approve").status_code == 303
    r = post(alice, app, f"/admin/review/{second}/edit", {"answer": "The nurse in charge of the outgoing shift."})
    assert r.status_code == 303 and "adm_edited" in r.headers["location"]
    shown = cli(app, "shared", "show", second)
    assert "The nurse in charge of the outgoing shift." in shown and "pending" in shown
    r = post(alice, app, f"/admin/review/{second}/edit", {"answer": "  ", "approve": "1"})
    assert r.status_code == 400 and "cannot be empty" in r.text
    r = post(alice, app, f"/admin/review/{second}/edit", {"answer": "The outgoing nurse in charge signs it.",
                                                         "approve": "1"})
    assert r.status_code == 303
    third = re.search(r'id="card" data-record="([0-9a-f]+)"', alice.get("/admin/review").text).group(1)
    assert post(alice, app, f"/admin/review/{third}/reject").status_code == 303
    page = alice.get("/admin/review").text
    assert 'id="card-none"' in page and 'id="n-approved">5<' in page and 'id="n-rejected">1<' in page
    assert post(alice, app, "/admin/review/" + "f" * 32 + "/approve").status_code == 404
    audit = cli(app, "audit")
    for action, rid in (("review.approve", first), ("review.edit", second), ("review.reject", third)):
        assert re.search(rf"alice\t{action}\t{rid}\t", audit), action


def test_dataset_charts(app, alice):
    page = alice.get("/admin/review").text
    assert page.count('<svg class="chart"') == 5
    assert re.search(r"<title>Approved: 5</title>", page) and re.search(r"<title>import: 3</title>", page)


def test_export_every_format_with_the_cli_filters(app, alice, tmp_path):
    import io
    import json

    import openpyxl

    r = post(alice, app, "/admin/review/export", {"format": "xlsx", "status": "approved"})
    assert r.status_code == 200 and r.headers["content-disposition"].endswith('.xlsx"')
    rows = list(openpyxl.load_workbook(io.BytesIO(r.content)).active.iter_rows(values_only=True))
    answers = {row[2] for row in rows[1:]} | {row[-1] for row in rows[1:]}
    assert "The outgoing nurse in charge signs it." in answers and len(rows) == 6
    r = post(alice, app, "/admin/review/export", {"format": "alpaca", "status": "all", "redact": "1"})
    items = json.loads(r.content)
    assert len(items) == 6 and not any("store@example.org" in i["output"] for i in items)
    assert any("[EMAIL]" in i["output"] for i in items)
    # the same bytes as the CLI for the same filters
    out = tmp_path / "cli.jsonl"
    cli(app, "export", "--format", "openai", "--status", "approved", "-o", str(out))
    r = post(alice, app, "/admin/review/export", {"format": "openai", "status": "approved"})
    assert r.content == out.read_bytes()
    r = post(alice, app, "/admin/review/export", {"format": "alpaca", "since": "2999-01-01"})
    assert json.loads(r.content) == []
    r = post(alice, app, "/admin/review/export", {"format": "alpaca", "since": "yesterday"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text
    r = post(alice, app, "/admin/review/export", {"format": "pickle"})
    assert r.status_code == 400
    assert re.search(r'alice\texport\tconsole.xlsx\t.*"records": 5', cli(app, "audit"))


# ---------------------------------------------------------------- usage


def record_answers(app, items: list[dict]) -> list[str]:
    """Answer records as the chat saves them (usage fields included), with thumbs: (answer id)s."""
    import uuid
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from kbchat.records.database import feedbacks, open_database
    from kbchat.records.history import History
    from kbchat.settings import Settings

    db = open_database(Settings(data_dir=app.root / "data"))
    ids = []
    for it in items:
        aid = str(uuid.uuid4())
        rec = {"question": it["q"], "answer": "a", "persona_id": it.get("persona", "general"),
               "sources": [{"n": 1, "file": f, "page": 1, "collection": "kb-clinic"} for f in it.get("files", [])],
               "user": it.get("user", "bob"), "lang": "en", "via": "chat", "bases": ["shared", "kb-clinic"],
               "asked_at": datetime.now(timezone.utc).isoformat(), "first_token_ms": it.get("first", 100),
               "total_ms": it.get("total", 1000), "search_only": it.get("search_only", False),
               "not_covered": it.get("not_covered", False)}
        History(db).save_answer(aid, "thread-usage", rec)
        if "thumb" in it:
            with db.begin() as c:
                c.execute(insert(feedbacks).values(id=str(uuid.uuid4()), for_id=aid, thread_id="thread-usage",
                                                   value=it["thumb"]))
        ids.append(aid)
    return ids


def test_usage_figures_groups_and_csv(app, alice):
    record_answers(app, [
        {"q": "How do I reset my password?", "not_covered": True, "user": "dana", "total": 500},
        {"q": "how to reset a password", "not_covered": True, "total": 700},
        {"q": "Reset password how?", "thumb": 0, "files": ["it.pdf"], "total": 900},
        {"q": "病人跌倒怎麼辦？", "not_covered": True, "persona": "clinic", "total": 1100},
        {"q": "病人跌倒了怎麼辦", "not_covered": True, "persona": "clinic", "total": 1300},
        {"q": "What are the visiting hours?", "thumb": 1, "files": ["visits.pdf", "triage.pdf"], "total": 1500},
        {"q": "Triage colours?", "thumb": 1, "files": ["triage.pdf"], "search_only": True, "total": 1700},
        {"q": "Where is ward 3?", "files": ["triage.pdf"], "persona": "clinic", "total": 1900},
    ])
    page = alice.get("/admin/usage?days=7").text
    assert 'id="n-questions">8<' in page and 'id="n-search-only">1<' in page and 'id="n-not-covered">4<' in page
    assert 'id="thumbs-up-rate">67%<' in page  # 2 up of 3 rated
    assert 'id="latency-p50">1100<' in page and 'id="latency-p95">1900<' in page
    groups = re.findall(r'<tr><td class="content">([^<]+)</td><td class="num">(\d+)</td><td class="num">(\d+)</td>'
                        r'<td class="num">(\d+)</td>', page.split('id="unanswered"')[1].split("</table>")[0])
    assert ("How do I reset my password?", "3", "2", "1") in groups or \
        any(g[1:] == ("3", "2", "1") and "password" in g[0] for g in groups), groups
    assert any(g[1:] == ("2", "2", "0") and "跌倒" in g[0] for g in groups), groups
    cited = page.split('id="cited"')[1]
    assert re.search(r"<td>clinic</td><td>triage.pdf</td><td class=\"num\">3</td>", cited)
    assert page.count('<svg class="chart"') == 4
    r = alice.get("/admin/usage/csv/per_persona?days=7")
    assert r.status_code == 200 and r.content.startswith("\ufeff".encode())
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "Persona,Questions,Search-only answers" and "general,5,1" in lines and "clinic,3,0" in lines
    zh = alice.get("/admin/usage/csv/per_user?days=7", headers={"Accept-Language": "zh-TW"})
    assert zh.content.decode("utf-8-sig").splitlines()[0] == "使用者名稱,問題數,讚,倒讚"
    assert alice.get("/admin/usage/csv/secrets").status_code == 404
    r = alice.get("/admin/usage?since=2026-13-01")
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text


# ---------------------------------------------------------------- audit and system


def test_audit_filters_and_csv(app, alice):
    page = alice.get("/admin/audit").text
    assert 'data-action="user.add"' in page and 'data-action="login"' in page
    page = alice.get("/admin/audit?action=group.*").text
    actions = set(re.findall(r'data-action="([^"]+)"', page))
    assert actions and all(a.startswith("group.") for a in actions), actions
    page = alice.get("/admin/audit?user=bob&action=login").text
    assert set(re.findall(r'<tr data-action="([^"]+)"><td>[^<]+</td><td>([^<]*)</td>', page)) == {("login", "bob")}
    assert 'class="muted">None yet.' in alice.get("/admin/audit?since=2999-01-01").text
    assert 'data-action="user.add"' in alice.get("/admin/audit?until=2999-01-01&action=user.add").text
    assert alice.get("/admin/audit?since=soon").status_code == 400
    r = alice.get("/admin/audit/csv?action=kb.*")
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "When (UTC),User name,Action,Target,Address,Diagnostic output"
    assert any(",kb.access,wards," in ln for ln in lines[1:]) and all(",kb." in ln for ln in lines[1:])


def test_system_shows_the_doctor_report(app, alice):
    page = alice.get("/admin/system").text
    checks = dict(re.findall(r'data-check="([^"]+)" data-status="([a-z]+)"', page))
    assert checks["LLM endpoint"] in ("ok", "warn") and checks["embedder"] == "ok" and checks["data dir"] == "ok", checks
    assert "EmbeddedStore" in page and "SQLite" in page and "chainlit" in page
    zh = alice.get("/admin/system", headers={"Accept-Language": "zh-TW"}).text
    assert "語言模型" in zh and "正常" in zh


def test_the_chat_header_link_is_offered_to_admins(app, alice):
    assert alice.get("/admin/link").json() == {"label": "Administration", "url": "/admin"}
    assert alice.get("/admin/link", headers={"Accept-Language": "ja"}).json()["label"] == "管理コンソール"
    assert 'custom_js = "/public/kbchat.js"' in (app.root / ".chainlit" / "config.toml").read_text()
    assert "/public/admin-link.js" in alice.get("/public/kbchat.js").text  # the one custom_js loads it
    assert alice.get("/public/admin-link.js").status_code == 200


def test_an_invitation_link_sets_a_password_once(app, alice):
    import httpx

    r = post(alice, app, "/admin/people/add", {"name": "gail", "invite": "1"})
    link = html.unescape(re.search(r'id="invitation-link">([^<]+)<', r.text).group(1))
    assert link.startswith(app.url + "/invite/gail/") and "valid for 72 hours" in r.text
    assert re.search(r'alice\tuser.add\tgail\t.*"invited": true', cli(app, "audit"))
    path = link.removeprefix(app.url)
    with httpx.Client(base_url=app.url) as anon:
        assert anon.get(path).status_code == 200
        assert anon.get(path[:-4] + "0000").status_code == 404  # tampered
        assert anon.get(path.replace("/gail/", "/alice/")).status_code == 404  # another user's name
        assert anon.post(path, data={"password": "gail-password-1", "again": "gail-password-1"},
                         headers={"Origin": "https://evil.example"}).status_code == 403
        r = anon.post(path, data={"password": "gail-password-1", "again": "other-password"},
                      headers={"Origin": app.url})
        assert r.status_code == 400 and "The two passwords differ." in r.text
        r = anon.post(path, data={"password": "short", "again": "short"}, headers={"Origin": app.url})
        assert r.status_code == 400 and "too short" in r.text
        r = anon.post(path, data={"password": "gail-password-1", "again": "gail-password-1"},
                      headers={"Origin": app.url}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        login(app.url, "gail", "gail-password-1").close()
        r = anon.get(path)  # used once: gone
        assert r.status_code == 404 and "already used" in r.text
    assert re.search(r'gail\tuser.password\tgail\t.*"via": "invitation"', cli(app, "audit"))


def test_an_expired_invitation_is_refused(app, alice, monkeypatch):
    import time

    import httpx

    from kbchat.ui.admin import invite

    post(alice, app, "/admin/people/add", {"name": "hank", "invite": "1"})
    # sign links with the app's secret: one that expired an hour ago, and a fresh one
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", (app.root / "data" / "auth-secret").read_text().strip())
    expired = invite.invitation_path("hank", now=time.time() - (invite.INVITE_HOURS + 1) * 3600)
    fresh = invite.invitation_path("hank")
    with httpx.Client(base_url=app.url) as anon:
        assert anon.get(expired).status_code == 404
        assert anon.get(fresh).status_code == 200


def test_disable_refuses_sign_in_session_and_api_key_then_enable_restores(app, alice):
    import httpx

    post(alice, app, "/admin/people/add", {"name": "gina", "password": "gina-password-1"})
    gina = login(app.url, "gina", "gina-password-1")
    assert gina.get("/user").status_code == 200
    key = cli(app, "keys", "create", "--user", "gina", "--scope", "chat").strip()
    models = lambda: httpx.get(f"{app.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert models().status_code == 200
    assert post(alice, app, "/admin/people/gina/disabled", {"disabled": "1"}).status_code == 303
    assert re.search(r"^gina\tuser\tpassword\t.*\tdisabled$", cli(app, "users", "list"), re.M)
    assert 'data-user="gina"' in alice.get("/admin/people").text
    assert gina.get("/user").status_code == 401  # the open session is refused at once
    assert httpx.post(f"{app.url}/login", data={"username": "gina", "password": "gina-password-1"},
                      timeout=30).status_code == 401  # no new sign-in
    r = models()
    assert r.status_code == 401 and r.json()["error"]["code"] == "disabled_user"
    r = post(alice, app, "/admin/people/alice/disabled", {"disabled": "1"})  # not oneself
    assert r.status_code == 400 and not re.search(r"^alice\t.*disabled$", cli(app, "users", "list"), re.M)
    assert post(alice, app, "/admin/people/gina/disabled", {"disabled": "0"}).status_code == 303
    login(app.url, "gina", "gina-password-1").close()
    assert models().status_code == 200  # her key works again: nothing was deleted
    assert "gina is now disabled" in cli(app, "users", "disable", "gina")  # the CLI does the same
    assert models().status_code == 401
    assert "gina is now enabled" in cli(app, "users", "enable", "gina") and models().status_code == 200
    audit = cli(app, "audit")
    assert re.search(r"alice\tuser.disable\tgina\t", audit) and re.search(r"alice\tuser.enable\tgina\t", audit)
    assert re.search(r"gina\tlogin.failed\t.*account disabled", audit)
    gina.close()

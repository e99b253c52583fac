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

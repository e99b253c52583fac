"""Every console route refuses whoever is not an admin now: anonymous -> the login page, a plain user -> 403,
an admin's POST with a forged or missing CSRF token or from another site -> 403, and nothing changes.

ROUTES lists every console route (a concrete path for each template); test_every_console_route_is_listed
fails when a section adds a route without listing it here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import login

pytestmark = [pytest.mark.app(admins=("alice",), users=("bob",))]

REPO = Path(__file__).resolve().parents[2]
ADMIN = REPO / "kbchat" / "ui" / "admin"

# (method, path template as registered, concrete path used by the test)
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/admin", "/admin"),
    ("GET", "/admin/link", "/admin/link"),
    ("GET", "/admin/people", "/admin/people"),
    ("GET", "/admin/knowledge", "/admin/knowledge"),
    ("GET", "/admin/personas", "/admin/personas"),
    ("GET", "/admin/personas/new", "/admin/personas/new"),
    ("GET", "/admin/personas/edit/{pid}", "/admin/personas/edit/general"),
    ("GET", "/admin/personas/edit/{pid}/yaml", "/admin/personas/edit/general/yaml"),
    ("GET", "/admin/personas/export.zip", "/admin/personas/export.zip"),
    ("GET", "/admin/personas/preview/{pid}", "/admin/personas/preview/general"),
    ("POST", "/admin/personas/save", "/admin/personas/save"),
    ("POST", "/admin/personas/edit/{pid}/restore", "/admin/personas/edit/general/restore"),
    ("POST", "/admin/personas/edit/{pid}/status", "/admin/personas/edit/analyst/status"),
    ("POST", "/admin/personas/edit/{pid}/delete", "/admin/personas/edit/analyst/delete"),
    ("POST", "/admin/personas/import", "/admin/personas/import"),
    ("POST", "/admin/personas/import-csv", "/admin/personas/import-csv"),
    ("GET", "/admin/review", "/admin/review"),
    ("GET", "/admin/usage", "/admin/usage"),
    ("GET", "/admin/audit", "/admin/audit"),
    ("GET", "/admin/system", "/admin/system"),
    # people
    ("POST", "/admin/people/add", "/admin/people/add"),
    ("POST", "/admin/people/{name}/groups", "/admin/people/bob/groups"),
    ("POST", "/admin/people/{name}/role", "/admin/people/bob/role"),
    ("POST", "/admin/people/{name}/password", "/admin/people/bob/password"),
    ("POST", "/admin/people/{name}/disabled", "/admin/people/bob/disabled"),
    ("GET", "/admin/people/{name}/remove", "/admin/people/bob/remove"),
    ("POST", "/admin/people/{name}/remove", "/admin/people/bob/remove"),
    ("POST", "/admin/groups/add", "/admin/groups/add"),
    ("POST", "/admin/groups/{name}/quota", "/admin/groups/staff/quota"),
    ("POST", "/admin/groups/{name}/remove", "/admin/groups/staff/remove"),
    # knowledge
    ("POST", "/admin/knowledge/create", "/admin/knowledge/create"),
    ("GET", "/admin/knowledge/{base}", "/admin/knowledge/clinic"),
    ("POST", "/admin/knowledge/{base}/access", "/admin/knowledge/clinic/access"),
    ("POST", "/admin/knowledge/{base}/remove", "/admin/knowledge/clinic/remove"),
    ("POST", "/admin/knowledge/{base}/upload", "/admin/knowledge/clinic/upload"),
    ("GET", "/admin/jobs/{job_id}", "/admin/jobs/" + "0" * 32),
    # review and dataset
    ("POST", "/admin/review/{record_id}/approve", "/admin/review/" + "a" * 32 + "/approve"),
    ("POST", "/admin/review/{record_id}/reject", "/admin/review/" + "a" * 32 + "/reject"),
    ("POST", "/admin/review/{record_id}/edit", "/admin/review/" + "a" * 32 + "/edit"),
    ("POST", "/admin/review/export", "/admin/review/export"),
    ("POST", "/admin/review/import", "/admin/review/import"),
    # usage
    ("GET", "/admin/usage/csv/{table}", "/admin/usage/csv/per_user"),
    # audit
    ("GET", "/admin/audit/csv", "/admin/audit/csv"),
]
# What each POST would change if it got through (the refusal tests check nothing changed).
FORM = {"name": "mallory", "role": "admin", "disabled": "1", "groups": "staff", "quota": "0", "password": "mallory-password-1",
        "mode": "admins", "key": "x.pdf", "description": "x"}
POSTS = [r for r in ROUTES if r[0] == "POST"]
# GET routes that answer with a download or a redirect rather than a console page
NOT_PAGES = {"/admin/personas/edit/{pid}/yaml", "/admin/personas/export.zip", "/admin/personas/preview/{pid}"}
# Console routes open without a sign-in, by design (tests/ui/test_admin_console.py tests them): the invitation
# link's page, valid only with a signed, unexpired, unused link.
PUBLIC = ("/invite/",)
IDS = [f"{m} {p}" for m, _, p in ROUTES]


def _registered() -> set[tuple[str, str]]:
    """The console's routes as its modules declare them (decorators), plus the shell's own."""
    found = {("GET", "/admin"), ("GET", "/admin/link")}
    from_shell = re.findall(r'\("([a-z]+)", "adm_nav_', (ADMIN / "shell.py").read_text(encoding="utf-8"))
    written = set(re.findall(r'^\s*"([a-z]+)": "', (ADMIN / "__init__.py").read_text(encoding="utf-8"), re.M))
    found |= {("GET", f"/admin/{slug}") for slug in from_shell if slug not in written}
    for path in ADMIN.glob("*.py"):
        for method, route in re.findall(r'@router\.(get|post)\(\s*"([^"]+)"', path.read_text(encoding="utf-8")):
            if not route.startswith(PUBLIC):
                found.add((method.upper(), route))
    return found


def test_every_console_route_is_listed():
    listed = {(m, tpl) for m, tpl, _ in ROUTES}
    assert _registered() - listed == set(), "add these console routes to ROUTES"
    assert listed - _registered() == set(), "ROUTES lists routes the console does not have"


@pytest.fixture(scope="module")
def clients(app):
    import httpx

    made = {"anon": httpx.Client(base_url=app.url, timeout=30), "bob": login(app.url, "bob"),
            "alice": login(app.url, "alice")}
    yield made
    for c in made.values():
        c.close()


def _csrf(client) -> str:
    html = client.get("/admin").text
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', html).group(1)


@pytest.mark.parametrize("method,tpl,path", ROUTES, ids=IDS)
def test_anonymous_is_sent_to_the_login_page(clients, app, method, tpl, path):
    r = clients["anon"].request(method, path, headers={"Origin": app.url}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login", (r.status_code, r.text[:200])


@pytest.mark.parametrize("method,tpl,path", ROUTES, ids=IDS)
def test_plain_user_gets_403(clients, app, method, tpl, path):
    r = clients["bob"].request(method, path, headers={"Origin": app.url}, follow_redirects=False)
    assert r.status_code == 403, (r.status_code, r.text[:200])
    assert "administrators only" in r.text


# Pages an admin opens (an unknown job is 404 for an admin too: tests/ui/test_admin_console.py; downloads and
# the preview redirect are not pages).
PAGES = [r for r in ROUTES if r[0] == "GET" and "{job_id}" not in r[1] and "csv" not in r[1] and r[1] != "/admin/link"
         and r[1] not in NOT_PAGES]


@pytest.mark.parametrize("method,tpl,path", PAGES, ids=[f"GET {p}" for _, _, p in PAGES])
def test_admin_sees_every_page(clients, method, tpl, path):
    r = clients["alice"].get(path, follow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert 'id="nav-people"' in r.text and "Administration" in r.text


@pytest.mark.parametrize("method,tpl,path", POSTS, ids=[f"POST {p}" for _, _, p in POSTS])
def test_admin_post_with_forged_or_missing_token_is_refused(clients, app, method, tpl, path):
    alice = clients["alice"]
    for token in ("0" * 64, "", None):
        data = dict(FORM, **({"csrf": token} if token is not None else {}))
        r = alice.post(path, data=data, headers={"Origin": app.url}, follow_redirects=False)
        assert r.status_code == 403, (token, r.status_code, r.text[:200])
        assert "not sent by this console" in r.text


@pytest.mark.parametrize("method,tpl,path", POSTS, ids=[f"POST {p}" for _, _, p in POSTS])
def test_admin_post_from_another_site_is_refused(clients, app, method, tpl, path):
    alice = clients["alice"]
    token = _csrf(alice)
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/form"},
                    {"Origin": "null"}, {}):
        r = alice.post(path, data=dict(FORM, csrf=token), headers=headers, follow_redirects=False)
        assert r.status_code == 403, (headers, r.status_code, r.text[:200])
        assert "did not come from a page of this site" in r.text


def test_nothing_changed_by_the_refused_posts(clients, app):
    """Runs after the refusal tests: no account, group or role was made or changed by them."""
    from tests.fixtures.appserver import kbchat_cli

    users = kbchat_cli("users", "list", data_dir=app.root / "data").stdout
    assert "mallory" not in users and re.search(r"^bob\tuser\t", users, re.M), users
    assert "staff" not in kbchat_cli("groups", "list", data_dir=app.root / "data").stdout
    audit = kbchat_cli("audit", data_dir=app.root / "data").stdout
    assert "console" not in audit, audit  # every console change is audited with "via": "console"


def test_a_token_of_another_session_is_refused(clients, app):
    """The token is bound to the session: alice's token from one sign-in does not work in another."""
    other = login(app.url, "alice")
    try:
        r = other.post("/admin/groups/add", data=dict(FORM, csrf=_csrf(clients["alice"])),
                       headers={"Origin": app.url}, follow_redirects=False)
        assert r.status_code == 403
        ok = other.post("/admin/groups/add", data={"name": "night-shift", "csrf": _csrf(other)},
                        headers={"Origin": app.url}, follow_redirects=False)
        assert ok.status_code == 303, ok.text[:300]
    finally:
        other.close()


def test_anonymous_with_a_forged_session_cookie_is_sent_to_the_login_page(app):
    import httpx

    with httpx.Client(base_url=app.url, cookies={"access_token": "forged.jwt.value"}) as c:
        r = c.get("/admin/people", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_zh_tw_browser_gets_the_console_in_traditional_chinese(clients):
    r = clients["alice"].get("/admin", headers={"Accept-Language": "zh-TW,zh;q=0.9,en;q=0.8"})
    assert "管理主控台" in r.text and "人員" in r.text and "Administration" not in r.text
    r = clients["bob"].get("/admin", headers={"Accept-Language": "zh-TW"})
    assert r.status_code == 403 and "管理主控台僅限管理員使用" in r.text


def test_admin_refused_after_losing_the_role(app, clients):
    """The role is read from the database on every request: a demoted admin's session is refused at once."""
    from tests.fixtures.appserver import add_users, kbchat_cli

    add_users(app.root / "data", admins=("boss",))
    c = login(app.url, "boss")
    try:
        assert c.get("/admin").status_code == 200
        r = kbchat_cli("users", "role", "boss", "user", data_dir=app.root / "data")
        assert r.returncode == 0, r.stderr
        assert c.get("/admin").status_code == 403
    finally:
        c.close()

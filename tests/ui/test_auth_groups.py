"""Groups from the identity provider, against the real app: the proxy's groups header (KBCHAT_AUTH_GROUPS_HEADER)
and an OAuth groups claim (KBCHAT_OAUTH_GROUPS_CLAIM, Chainlit's generic OAuth provider against a stub identity
provider on loopback, the whole redirect flow). Memberships are created and refreshed at each sign-in, hand-set
ones stay, hostile content signs in with one warning line, and every sign-in or refusal is in the audit log."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import httpx
import pytest

from tests.fixtures.appserver import AppServer, kbchat_cli
from tests.stubs.idp import StubIdP

USER_H, GROUPS_H = "X-Forwarded-User", "X-Forwarded-Groups"
pytestmark = [pytest.mark.slow, pytest.mark.app(env={"KBCHAT_AUTH_HEADER": USER_H,
                                                     "KBCHAT_AUTH_GROUPS_HEADER": GROUPS_H})]


def cli(app, *args) -> str:
    r = kbchat_cli(*args, data_dir=app.root / "data")
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def groups_of(app, name: str) -> str:
    """The user's groups as `kbchat users list` shows them (* = from the identity provider)."""
    row = next(x for x in cli(app, "users", "list").splitlines() if x.split("\t")[0] == name)
    return row.split("\t")[3]


def header_sign_in(app, name: str, groups: str | None) -> int:
    """POST /auth/header as a proxy would send it (http.client: control characters go through unchanged)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    headers = {USER_H: name, "Content-Type": "application/json"}
    if groups is not None:
        headers[GROUPS_H] = groups
    conn.request("POST", "/auth/header", body=b"{}", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def warnings(app, source: str) -> int:
    return sum(1 for line in app.read_log().splitlines() if f"groups from {source}" in line)


def audit(root, action: str) -> list[dict]:
    r = kbchat_cli("audit", "--action", action, "--json", data_dir=root / "data")
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_header_groups_are_created_and_refreshed_hand_set_ones_stay(app):
    assert header_sign_in(app, "dana", "hr, clinic-a") == 200
    assert groups_of(app, "dana") == "clinic-a*,hr*"
    assert "clinic-a\t" in cli(app, "groups", "list")  # created on first sight
    cli(app, "groups", "add", "auditors")
    cli(app, "users", "groups", "dana", "--add", "auditors,hr")  # hand-set, hr also from the proxy
    assert groups_of(app, "dana") == "auditors,clinic-a*,hr"
    assert header_sign_in(app, "dana", "hr") == 200          # clinic-a dropped from the header
    assert groups_of(app, "dana") == "auditors,hr"
    assert header_sign_in(app, "dana", None) == 200          # no groups header: no groups from the proxy
    assert groups_of(app, "dana") == "auditors,hr"           # the hand-set ones stay
    assert cli(app, "users", "groups", "dana", "--remove", "hr").strip() == "dana: auditors"
    logins = [r for r in audit(app.root, "login") if r["user_identifier"] == "dana"]
    assert [r["detail"].get("groups_removed") for r in logins] == [None, ["clinic-a"], ["hr"]]
    assert logins[0]["detail"] == {"mode": "header", "groups": ["hr", "clinic-a"],
                                   "groups_added": ["hr", "clinic-a"]}
    assert all(r["address"] == "127.0.0.1" for r in logins)


@pytest.mark.parametrize("groups, kept, warned", [
    ("", "-", 0),
    (" , ,,", "-", 0),
    (",".join(f"g{i}" for i in range(10_000)), None, 1),       # 48,890 characters, cut and truncated
    ("hr,\tevil\tname,o\x85k,clinic-a", "clinic-a*,hr*", 1),  # the control characters a parser lets through
    ("hr,bad name!,../etc,\u00e9quipe,clinic-a", "clinic-a*,hr*", 1),
], ids=["empty", "blanks", "10000-groups", "control-chars", "invalid-names"])
def test_hostile_groups_header_signs_in_with_one_warning(app, groups, kept, warned):
    before = warnings(app, f"header {GROUPS_H}")
    assert header_sign_in(app, "eve", groups) == 200
    assert warnings(app, f"header {GROUPS_H}") - before == warned
    mine = groups_of(app, "eve")
    if kept is None:
        assert len(mine.split(",")) == 100 and mine.startswith("g0*,g1*,g10*")
    else:
        assert mine == kept


def test_control_characters_the_http_parser_refuses_never_reach_the_app(app):
    before = (warnings(app, f"header {GROUPS_H}"), groups_of(app, "eve"))
    for bad in ("hr,\x01evil", "hr\x7f", "hr,\x1b[31mred"):
        assert header_sign_in(app, "eve", bad) == 400  # uvicorn's parser, before any kbchat code
    assert (warnings(app, f"header {GROUPS_H}"), groups_of(app, "eve")) == before


def test_refused_header_sign_ins_are_audited(app):
    assert header_sign_in(app, "", "hr") == 401
    assert header_sign_in(app, "a b", "hr") == 401
    failed = audit(app.root, "login.failed")
    assert [(r["user_identifier"], r["detail"]["reason"]) for r in failed[-2:]] == [
        (None, "no header"), ("a b", "not a user name")]
    assert all(r["address"] == "127.0.0.1" and r["detail"]["mode"] == "header" for r in failed)


# ------------------------------------------------------------------ OAuth, the real redirect flow


@pytest.fixture(scope="module")
def oauth(tmp_path_factory, stub):
    """An app in OAuth mode (Chainlit's generic provider) against the stub identity provider; (app, idp)."""
    idp = StubIdP().start()
    srv = AppServer(tmp_path_factory.mktemp("oauth"), stub.base_url,
                    extra_env={**idp.env(), "KBCHAT_OAUTH_GROUPS_CLAIM": "groups"})
    try:
        srv.wait_ready()
        yield srv, idp
    finally:
        srv.stop()
        idp.stop()


def oauth_sign_in(srv, idp, user: dict) -> httpx.Client:
    """The browser's round trip: the app's /auth/oauth/generic -> the provider's /authorize -> the app's
    callback (state cookie checked, code swapped for a token, /userinfo read) -> /login/callback."""
    idp.next_user = user
    c = httpx.Client(base_url=srv.url, timeout=30, follow_redirects=True)
    r = c.get("/auth/oauth/generic")
    assert r.status_code == 200, r.text
    c.final_url = str(r.url)
    return c


def test_oauth_claim_creates_and_refreshes_memberships(oauth):
    srv, idp = oauth
    assert "sign-in mode: oauth" in srv.read_log()
    c = oauth_sign_in(srv, idp, {"preferred_username": "erin", "groups": ["hr", "clinic-a"]})
    assert "/login/callback" in c.final_url and c.cookies.get("access_token")
    assert c.post("/project/threads", json={"pagination": {"first": 5}, "filter": {}}).status_code == 200
    assert idp.requests == ["/authorize", "/token", "/userinfo"]
    assert groups_of(srv, "erin") == "clinic-a*,hr*"
    r = kbchat_cli("groups", "add", "auditors", data_dir=srv.root / "data")
    assert r.returncode == 0
    assert kbchat_cli("users", "groups", "erin", "--add", "auditors", data_dir=srv.root / "data").returncode == 0
    oauth_sign_in(srv, idp, {"preferred_username": "erin", "groups": "hr"})  # comma text works too
    assert groups_of(srv, "erin") == "auditors,hr*"
    oauth_sign_in(srv, idp, {"preferred_username": "erin"})                  # no claim: no provider groups
    assert groups_of(srv, "erin") == "auditors"
    logins = [r for r in audit(srv.root, "login") if r["user_identifier"] == "erin"]
    assert len(logins) == 3 and logins[1]["detail"]["groups_removed"] == ["clinic-a"]
    assert logins[0]["detail"]["mode"] == "oauth" and logins[0]["address"] == "127.0.0.1"


@pytest.mark.parametrize("claim, kept", [
    ([f"team-{i}" for i in range(10_000)], None),
    (["hr", 7, None, {"x": 1}, "bad name", "clinic-a\x00"], "hr*"),
    ({"not": "a list"}, "-"),
], ids=["10000-groups", "mixed-junk", "not-a-list"])
def test_hostile_oauth_claim_signs_in_with_one_warning(oauth, claim, kept):
    srv, idp = oauth
    before = warnings(srv, "OAuth claim groups")
    c = oauth_sign_in(srv, idp, {"preferred_username": "frank", "groups": claim})
    assert c.cookies.get("access_token")
    assert warnings(srv, "OAuth claim groups") - before == 1
    mine = groups_of(srv, "frank")
    assert len(mine.split(",")) == 100 if kept is None else mine == kept


def test_refused_oauth_sign_in_is_audited(oauth):
    srv, idp = oauth
    c = oauth_sign_in(srv, idp, {"preferred_username": "not a name", "groups": ["hr"]})
    assert "error=oauthSignin" in urllib.parse.unquote(c.final_url) and not c.cookies.get("access_token")
    failed = audit(srv.root, "login.failed")[-1]
    assert failed["user_identifier"] == "not a name" and failed["detail"]["mode"] == "oauth"
    assert failed["detail"]["provider"] == "generic" and failed["address"] == "127.0.0.1"

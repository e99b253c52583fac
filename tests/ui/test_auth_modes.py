"""Sign-in behind an SSO proxy (KBCHAT_AUTH_HEADER), against the real app: the header is the user, users
are created on first sight with role 'user', no header means no session."""

from __future__ import annotations

import httpx
import pytest

from kbchat.records.accounts import Accounts
from kbchat.records.database import Database, default_url

pytestmark = [pytest.mark.slow, pytest.mark.app(env={"KBCHAT_AUTH_HEADER": "X-Forwarded-User"})]


def test_proxy_header_signs_in_and_creates_users_on_first_sight(app):
    assert "sign-in mode: header" in app.read_log()
    anon = httpx.Client(base_url=app.url, timeout=30)
    cfg = anon.get("/auth/config").json()
    assert cfg["headerAuth"] is True and cfg["passwordAuth"] is False
    assert anon.post("/auth/header", json={}).status_code == 401            # no header, no session
    assert anon.post("/auth/header", json={}, headers={"X-Forwarded-User": "a b"}).status_code == 401
    assert anon.post("/project/threads", json={"pagination": {"first": 5}, "filter": {}}).status_code == 401
    dana = httpx.Client(base_url=app.url, timeout=30)
    r = dana.post("/auth/header", json={}, headers={"X-Forwarded-User": "dana"})
    assert r.status_code == 200 and dana.cookies.get("access_token")
    r = dana.post("/project/threads", json={"pagination": {"first": 5}, "filter": {}})
    assert r.status_code == 200 and r.json()["data"] == []
    acct = Accounts(Database(default_url(app.root / "data"))).get("dana")
    assert acct.role == "user" and acct.source == "header" and not acct.has_password
    assert "user dana created on first sight (header, role user)" in app.read_log()

"""Accounts, the login limit, the auth secret, the CLI, and every kind of history record round-tripped
through the app's data layer on a real SQLite database and a real PostgreSQL; the core imports no chainlit."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from kbchat.records.accounts import AccountError, Accounts, LoginLimiter, auth_secret
from kbchat.records.database import Database, default_url
from tests.conftest import REPO


def test_passwords_are_argon2_hashes_never_clear(db):
    acc = Accounts(db)
    acc.add("alice", "correct horse battery", role="admin")
    with db.connect() as c:
        stored = c.exec_driver_sql("SELECT password_hash FROM users WHERE identifier='alice'").scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    raw = open(db.engine.url.database, "rb").read() if db.is_sqlite else b""
    assert b"correct horse battery" not in raw
    assert acc.verify("alice", "correct horse battery").role == "admin"
    assert acc.verify("alice", "wrong") is None
    assert acc.verify("nobody", "correct horse battery") is None


def test_account_rules(db):
    acc = Accounts(db)
    with pytest.raises(AccountError, match="too short"):
        acc.add("bob", "short")
    with pytest.raises(AccountError, match="invalid user name"):
        acc.add("bob smith", "long-enough-pw")
    acc.add("bob", "long-enough-pw")
    with pytest.raises(AccountError, match="already exists"):
        acc.add("bob", "long-enough-pw")
    acc.set_role("bob", "admin")
    assert acc.get("bob").is_admin
    with pytest.raises(AccountError, match="unknown role"):
        acc.set_role("bob", "root")
    acc.set_password("bob", "another-password")
    assert acc.verify("bob", "long-enough-pw") is None and acc.verify("bob", "another-password")
    assert acc.password_users() == 1
    acc.ensure("proxyuser", source="header")      # first sight, no password: login mode unchanged
    assert acc.password_users() == 1 and acc.get("proxyuser").role == "user"
    acc.remove("bob")
    assert acc.get("bob") is None
    with pytest.raises(AccountError, match="no user named bob"):
        acc.remove("bob")


def test_login_limiter_per_user_and_per_address():
    now = [0.0]
    lim = LoginLimiter(max_failures=3, window=60, per_address_factor=2, clock=lambda: now[0])
    for _ in range(3):
        assert lim.blocked("alice", "10.0.0.1") is None
        lim.failed("alice", "10.0.0.1")
    assert lim.blocked("alice", "10.0.0.9") == "user"       # the name is limited from any address
    assert lim.blocked("bob", "10.0.0.1") is None            # 3 of 6 for the address
    for name in ("x", "y", "z"):
        lim.failed(name, "10.0.0.1")
    assert lim.blocked("carol", "10.0.0.1") == "address"
    assert lim.blocked("carol", "10.0.0.2") is None
    now[0] = 61.0                                            # the window passed
    assert lim.blocked("alice", "10.0.0.1") is None
    lim.failed("dave", "10.0.0.3")
    lim.succeeded("dave")
    assert lim.blocked("dave", "10.0.0.3") is None


def test_auth_secret_created_once_owner_only_and_reused(tmp_path):
    a = auth_secret(tmp_path / "d")
    path = tmp_path / "d" / "auth-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(a) >= 32
    assert auth_secret(tmp_path / "d") == a
    os.chmod(path, 0o644)
    assert auth_secret(tmp_path / "d") == a and stat.S_IMODE(path.stat().st_mode) == 0o600


def _cli(*args, data_dir, stdin=None):
    return subprocess.run([sys.executable, "-m", "kbchat", *args, "--data-dir", str(data_dir)], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_users_cli(tmp_path):
    d = tmp_path / "data"
    r = _cli("users", "add", "admin", "--admin", "--password-stdin", data_dir=d, stdin="admin-password\n")
    assert r.returncode == 0 and "added admin (admin)" in r.stdout and "login is now on" in r.stderr
    r = _cli("users", "add", "admin", "--password-stdin", data_dir=d, stdin="admin-password\n")
    assert r.returncode == 1 and r.stderr.strip() == "Error: user admin already exists"
    r = _cli("users", "add", "eve", "--password-stdin", data_dir=d, stdin="short\n")
    assert r.returncode == 1 and "password too short" in r.stderr
    assert _cli("users", "add", "eve", "--password-stdin", data_dir=d, stdin="eve-password\n").returncode == 0
    assert _cli("users", "role", "eve", "admin", data_dir=d).stdout.strip() == "eve is now admin"
    assert _cli("users", "passwd", "eve", "--password-stdin", data_dir=d, stdin="new-eve-password\n").returncode == 0
    out = _cli("users", "list", data_dir=d).stdout
    assert "admin\tadmin\tpassword" in out and "eve\tadmin\tpassword" in out
    assert "eve-password" not in out
    r = _cli("users", "remove", "eve", "--yes", data_dir=d)
    assert r.returncode == 0 and "removed eve and 0 thread(s)" in r.stdout
    r = _cli("users", "remove", "eve", "--yes", data_dir=d)
    assert r.returncode == 1 and "no user named eve" in r.stderr
    acc = Accounts(Database(default_url(d)))
    assert acc.verify("admin", "admin-password") and acc.get("eve") is None


def test_core_imports_no_chainlit():
    """Everything in kbchat/ except kbchat/ui/ (sub-packages included, recursively) loads without chainlit."""
    mods = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                  for p in (REPO / "kbchat").rglob("*.py")
                  if "ui" not in p.relative_to(REPO).parts and "migrations" not in p.parts and p.stem != "__main__")
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + "bad = sorted(m for m in sys.modules if m == 'chainlit' or m.startswith('chainlit.'))\n"
            "print(len(sys.modules), bad)\nassert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kbchat.cli" in mods and "kbchat.search.store" in mods and "[]" in r.stdout


# ---------------------------------------------------------------- history through the data layer


@pytest.fixture(params=["sqlite", "postgresql"])
def layer(request, tmp_path, monkeypatch):
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "data"))
    if request.param == "postgresql":
        monkeypatch.setenv("KBCHAT_DATABASE_URL", request.getfixturevalue("pg_url"))
    monkeypatch.setenv("KBCHAT_PERSONAS_DIR", str(REPO / "personas"))
    from kbchat.ui import runtime

    runtime.reset()
    from kbchat.ui.datalayer import KbchatDataLayer

    acc = Accounts(runtime.database())
    acc.add("alice", "alice-password")
    acc.add("bob", "bob-password")
    yield KbchatDataLayer(), acc
    runtime.reset()


async def test_every_record_kind_round_trips(layer):
    """Threads (metadata dict, tags list), steps (modes dict, every 2.12 key), elements, feedback: what
    the stock SQLAlchemy layer dropped silently on SQLite comes back here."""
    from chainlit.types import Feedback, Pagination, ThreadFilter

    from kbchat.ui.auth import CURRENT

    dl, acc = layer
    alice = acc.get("alice")
    await dl.update_thread("t1", name="Zebra ports", user_id=alice.id,
                           metadata={"chat_profile": "doctor", "chat_settings": {"k": 7}, "is_shared": True},
                           tags=["doctor", "中文"])
    step = {"id": "s1", "threadId": "t1", "parentId": None, "name": "alice", "type": "user_message",
            "output": "Which port? 哪個埠？", "createdAt": "2026-12-01T10:00:00.000Z", "start": None, "end": None,
            "modes": {"search": "web"}, "command": None, "defaultOpen": False, "autoCollapse": True,
            "metadata": {"x": [1, 2]}, "tags": ["a"], "isError": False, "showInput": "json"}
    await dl.create_step(step)
    ans = {**step, "id": "s2", "type": "assistant_message", "output": "Port 7777 (Source 1)",
           "createdAt": "2026-12-01T10:00:01.000Z", "name": "kbchat"}
    await dl.create_step(ans)
    await dl.update_step({**ans, "output": "Port 7777, see Source 1."})
    import chainlit as cl
    from chainlit.context import ChainlitContext, context_var
    from chainlit.session import HTTPSession

    context_var.set(ChainlitContext(HTTPSession(id="t", client_type="webapp")))  # elements need a context
    el = cl.Pdf(name="Source 1", display="side", page=2, url="/kbchat/upload/t1/abcdef0123456789", for_id="s2")
    el.thread_id = "t1"
    await dl.create_element(el)
    token = CURRENT.set(alice)
    try:
        fid = await dl.upsert_feedback(Feedback(forId="s2", value=1, comment="good"))
    finally:
        CURRENT.reset(token)

    t = await dl.get_thread("t1")
    assert t["name"] == "Zebra ports" and t["userIdentifier"] == "alice" and t["tags"] == ["doctor", "中文"]
    assert t["metadata"] == {"chat_profile": "doctor", "chat_settings": {"k": 7}}  # never public
    s1, s2 = t["steps"]
    assert s1["modes"] == {"search": "web"} and s1["autoCollapse"] is True and s1["metadata"] == {"x": [1, 2]}
    assert s1["output"] == "Which port? 哪個埠？"
    assert s2["output"] == "Port 7777, see Source 1." and s2["feedback"]["value"] == 1
    assert s2["feedback"]["comment"] == "good" and s2["feedback"]["id"] == fid
    (e,) = t["elements"]
    assert e["page"] == 2 and e["url"].endswith("abcdef0123456789") and e["forId"] == "s2"
    assert await dl.get_element("t1", e["id"]) == e
    assert await dl.get_thread_author("t1") == "alice"
    page = await dl.list_threads(Pagination(first=10), ThreadFilter(userId=alice.id))
    assert [x["id"] for x in page.data] == ["t1"]
    bob = acc.get("bob")
    assert (await dl.list_threads(Pagination(first=10), ThreadFilter(userId=bob.id))).data == []
    # the owner of a thread never changes
    with pytest.raises(PermissionError):
        await dl.update_thread("t1", user_id=bob.id)
    # bob cannot rate or un-rate alice's messages (Chainlit's /feedback routes check no ownership)
    from fastapi import HTTPException

    token = CURRENT.set(bob)
    try:
        with pytest.raises(HTTPException):
            await dl.upsert_feedback(Feedback(forId="s2", value=0))
        with pytest.raises(HTTPException):
            await dl.delete_feedback(fid)
    finally:
        CURRENT.reset(token)
    assert (await dl.get_thread("t1"))["steps"][1]["feedback"]["value"] == 1


async def test_a_failed_write_is_raised_and_logged(layer):
    import logging

    dl, _acc = layer
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    h = Keep(level=logging.ERROR)
    logging.getLogger("kbchat").addHandler(h)
    try:
        with pytest.raises(ValueError):
            await dl.create_step({"id": "orphan", "type": "user_message"})  # no thread id
    finally:
        logging.getLogger("kbchat").removeHandler(h)
    assert seen == ["history: create_step failed"]
    assert (await dl.get_thread("orphan")) is None


async def test_concurrent_writes_of_one_message_keep_the_last_update(layer):
    """Chainlit fires create_step and each update_step as separate tasks: a new thread's first writes
    race, and the progress message of an upload is updated many times. The last update must win and
    no write may fail."""
    import asyncio

    dl, acc = layer
    base = {"threadId": "t-race", "type": "assistant_message", "createdAt": "2026-12-01T10:00:00.000Z"}
    writes = [dl.create_step({**base, "id": "m1", "output": "Indexing…"})]
    writes += [dl.update_step({**base, "id": "m1", "output": f"{i} / 20 pages read"}) for i in range(1, 21)]
    writes += [dl.create_step({**base, "id": f"other{i}", "output": "x"}) for i in range(5)]
    writes.append(dl.update_thread("t-race", name="race", user_id=acc.get("alice").id))
    await asyncio.gather(*writes)
    t = await dl.get_thread("t-race")
    assert t["userIdentifier"] == "alice" and t["name"] == "race"
    (m1,) = [s for s in t["steps"] if s["id"] == "m1"]
    assert m1["output"] == "20 / 20 pages read" and len(t["steps"]) == 6


def test_disable_keeps_the_account_and_the_last_admin_stays_enabled(db):
    accounts = Accounts(db)
    accounts.add("ada", "ada-password-1", role="admin")
    accounts.add("bea", "bea-password-1")
    assert accounts.set_disabled("bea", True).disabled
    assert accounts.verify("bea", "bea-password-1").disabled  # the sign-in callback refuses it
    with pytest.raises(AccountError, match="last enabled admin"):
        accounts.set_disabled("ada", True)
    assert not accounts.get("ada").disabled
    assert not accounts.set_disabled("bea", False).disabled

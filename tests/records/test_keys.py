"""API keys on both engines: only the SHA-256 is stored, a key verifies until it is revoked or expires,
scopes and durations are checked, the 0004 -> 0005 upgrade keeps existing rows; `kbchat keys` prints a key
once, lists and revokes, each change audited."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from kbchat.records.access import Access
from kbchat.records.accounts import Accounts
from kbchat.records.database import Database, default_url
from kbchat.records.keys import ApiKeyError, ApiKeys, hash_key, parse_expiry, parse_scopes


def test_only_the_hash_is_stored_and_the_key_verifies_until_revoked(db):
    keys = ApiKeys(db)
    key, rec = keys.create("alice", label="portal", scopes="chat,search", expires="90d")
    assert key.startswith("kbk_") and len(key) > 40 and rec.scopes == ("chat", "search")
    with db.connect() as c:
        stored = [tuple(r) for r in c.exec_driver_sql("SELECT key_hash, prefix FROM api_keys")]
    assert stored == [(hash_key(key), key[:10])]
    assert key not in repr(stored)
    found, why = keys.verify(key)
    assert why == "" and found.id == rec.id and found.user == "alice" and found.last_used_at
    assert keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) == (None, "unknown")
    assert keys.verify("sk-not-ours") == (None, "unknown")
    keys.revoke(rec.id)
    found, why = keys.verify(key)
    assert why == "revoked" and found.state() == "revoked"
    assert [k.state() for k in keys.list("alice")] == ["revoked"]


def test_expired_key_and_other_users_key(db):
    keys = ApiKeys(db)
    key, rec = keys.create("bob", expires="1m")
    assert keys.verify(key)[1] == ""
    later = datetime.now(timezone.utc) + timedelta(minutes=2)
    assert keys.get(rec.id).state(later) == "expired"
    with db.begin() as c:  # as if a minute had gone by
        c.exec_driver_sql("UPDATE api_keys SET expires_at = '2000-01-01T00:00:00+00:00'")
    assert keys.verify(key)[1] == "expired"
    with pytest.raises(ApiKeyError, match="no key"):
        keys.revoke(rec.id, user="alice")  # not alice's key
    assert keys.revoke(rec.id, user="bob").state() == "revoked"


def test_scopes_and_durations_are_checked():
    assert parse_scopes(None) == ("chat", "search")
    assert parse_scopes("dataset, CHAT") == ("chat", "dataset")
    with pytest.raises(ApiKeyError, match="unknown scope admin"):
        parse_scopes("chat,admin")
    assert parse_expiry("never") is None
    assert parse_expiry("12h", datetime(2026, 1, 1, tzinfo=timezone.utc)).startswith("2026-01-01T12:00")
    with pytest.raises(ApiKeyError, match="not a duration"):
        parse_expiry("soon")


def test_upgrade_from_0004_keeps_users(tmp_path):
    from alembic import command
    from alembic.config import Config

    from sqlalchemy import text

    from kbchat.records.database import MIGRATIONS

    url = default_url(tmp_path / "old")
    (tmp_path / "old").mkdir()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0004")
    old = Database(url, migrate=False)
    with old.begin() as c:  # a row as 0004 knew it (today's Accounts reads columns added later)
        c.execute(text("INSERT INTO users (id, identifier, role, source, created_at) "
                       "VALUES ('u1', 'alice', 'user', 'password', '2026-12-01T00:00:00+00:00')"))
    old.close()
    db = Database(url)
    assert Accounts(db).get("alice") is not None and ApiKeys(db).list() == []
    db.close()


def test_cli_prints_the_key_once_lists_and_revokes(cli_env):
    from kbchat.cli.main import main
    from kbchat.records.database import open_database
    from kbchat.settings import Settings

    runner = CliRunner()
    r = runner.invoke(main, ["users", "add", "alice", "--password-stdin"], input="a long password 1\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["keys", "create", "--user", "nobody"])
    assert r.exit_code == 1 and "no user named nobody" in r.output
    r = runner.invoke(main, ["keys", "create", "--user", "alice", "--scope", "chat,root"])
    assert r.exit_code == 1 and "unknown scope root" in r.output
    r = runner.invoke(main, ["keys", "create", "--user", "alice", "--label", "bot", "--expires", "30d",
                             "--scope", "chat"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert key.startswith("kbk_")
    r = runner.invoke(main, ["keys", "list"])
    [line] = r.stdout.splitlines()
    key_id, prefix, user, scopes, state = line.split("\t")[:5]
    assert (prefix, user, scopes, state) == (key[:10] + "…", "alice", "chat", "active") and key not in r.stdout
    r = runner.invoke(main, ["keys", "revoke", key_id])
    assert r.exit_code == 0 and f"revoked {key_id} (alice)" in r.stdout
    db = open_database(Settings(data_dir=cli_env))
    assert ApiKeys(db).verify(key)[1] == "revoked"
    actions = [(a["action"], a["target"]) for a in Access(db).audit_log(action="key.*")]
    assert actions == [("key.create", key_id), ("key.revoke", key_id)]

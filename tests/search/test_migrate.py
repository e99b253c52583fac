"""`kbchat migrate --to postgresql://…`: an embedded data dir copied into PostgreSQL (vectors too, nothing
re-embedded), counts verified, and the copy serves the same searches, accounts and chats."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from kbchat.cli import main
from kbchat.records.database import Database, close_databases
from tests.conftest import new_pg_database

ZEBRA = ["Zebra networks overview. The zebra protocol is used by the zoo.",
         "The zebra protocol uses port 7777 for all traffic. Heartbeats are sent every 30 seconds."]


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def data_dir(tmp_path, monkeypatch, pdf_factory):
    """An embedded data dir with two knowledge bases, a user, a chat with an answer, an upload row and a
    shared Q&A record, made through the CLI and the core as the app makes them."""
    from kbchat.records.accounts import Accounts
    from kbchat.records.history import History

    data = tmp_path / "data"
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(data))
    assert run("ingest", str(pdf_factory("zebra.pdf", ZEBRA))).exit_code == 0
    hr = pdf_factory("hr/leave.pdf", ["Holiday policy: employees get 25 days of leave per year.",
                                      "年假二十五天，请提前两周申请。"], fontname="china-s")
    assert run("ingest", "--collection", "kb-hr", str(hr)).exit_code == 0
    db = Database(f"sqlite:///{data / 'kbchat.sqlite'}")
    Accounts(db).add("alice", "correct horse battery", role="admin")
    h = History(db)
    h.upsert_thread("t1", name="Zebra port?", user_identifier="alice")
    h.upsert_step({"id": "s1", "threadId": "t1", "type": "user_message", "output": "zebra port?"})
    h.save_answer("s2", "t1", {"question": "zebra port?", "answer": "7777 [1]"})
    h.add_upload("t1", "ab" * 32, name="notes.pdf", path=str(data / "uploads" / "t1" / "notes.pdf"), owner="alice")
    from kbchat.records.database import now_iso, shared

    with db.begin() as c:
        c.execute(shared.insert().values(id="q1", answer_key="s2", shared_at=now_iso(), persona_id="",
                                         shared_by="alice", record='{"question": "zebra port?"}'))
    db.close()
    close_databases()
    return data


def test_migrate_copies_everything_and_the_copy_answers_the_same(data_dir, pg_server, monkeypatch):
    url = new_pg_database(pg_server)
    before = run("search", "which port does the zebra protocol use", "--json")
    before_hr = run("search", "--collection", "kb-hr", "年假几天", "--json")
    r = run("migrate", "--to", url)
    assert r.exit_code == 0, r.output
    assert "users: 1 rows" in r.output and "threads: 1 rows" in r.output and "uploads: 1 rows" in r.output
    assert "shared: 1 rows" in r.output and "collection kb-hr: 1 documents, 2 passages" in r.output
    assert "verified:" in r.output and "2 collection(s), 4 passages" in r.output

    pg = Database(url)
    with pg.connect() as c:
        assert c.execute(text("SELECT identifier, role FROM users")).all() == [("alice", "admin")]
        assert c.execute(text("SELECT count(*) FROM steps WHERE thread_id='t1'")).scalar() == 1
        assert c.execute(text("SELECT name FROM uploads")).scalar() == "notes.pdf"
        assert c.execute(text("SELECT count(*) FROM kb_passages")).scalar() == 4
    pg.close()

    # The same searches on the copy: the same passages in the same order, from the copied vectors.
    monkeypatch.setenv("KBCHAT_DATABASE_URL", url)
    after = run("search", "which port does the zebra protocol use", "--json")
    after_hr = run("search", "--collection", "kb-hr", "年假几天", "--json")
    close_databases()
    import json

    ids = [(h["source"], h["page"]) for h in json.loads(before.output)]
    assert ids and ids == [(h["source"], h["page"]) for h in json.loads(after.output)]
    assert [h["page"] for h in json.loads(before_hr.output)] == [h["page"] for h in json.loads(after_hr.output)]
    monkeypatch.delenv("KBCHAT_DATABASE_URL")

    again = run("migrate", "--to", url)  # never into a database that holds data
    assert again.exit_code == 1 and "the target database is not empty" in again.output
    assert len(again.output.strip().splitlines()) == 1


def test_migrate_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "nothing"))
    r = run("migrate", "--to", "postgresql://u@127.0.0.1:9/db")
    assert r.exit_code == 1 and "no kbchat data dir at" in r.output
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "kbchat.sqlite").write_bytes(b"")
    r = run("migrate", "--to", "sqlite:///x.db")
    assert r.exit_code == 1 and "--to must be a postgresql:// URL" in r.output

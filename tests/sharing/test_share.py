"""ShareStore against a real SQLite file: idempotent share, undo, reopen, concurrent writers, filters."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from kbchat.sharing.store import SharedQA, ShareStore, open_share_store


def make(key: str, **kw) -> SharedQA:
    base = dict(
        question="A100 的記憶體頻寬是多少？",
        answer="A100 80GB 的記憶體頻寬為 2,039 GB/s [1]。",
        reasoning="查看規格表第 3 頁。",
        persona_id="engineer",
        persona_prompt="你是 GPU 工程師。",
        user="alice",
        sources=[{"n": 1, "file": "nvidia-a100-datasheet.pdf", "page": 3, "text": "2,039 GB/s 記憶體頻寬"}],
        model="stub",
        settings={"reasoning": True, "k": 5},
        answer_key=key,
    )
    base.update(kw)
    return SharedQA(**base)


@pytest.fixture
def store(tmp_path):
    s = ShareStore(tmp_path / "data" / "shared.sqlite")
    yield s
    s.close()


def test_store_lives_in_the_data_dir_database(settings):
    s = open_share_store(settings)
    s.share(make("k-default"))
    assert (settings.data_dir / "kbchat.sqlite").is_file()
    assert not (settings.data_dir / "shared.sqlite").exists()
    assert s.get_by_key("k-default").question.startswith("A100")


# The share store of kbchat before the one database (kbchat/share.py at f46c531): its exact schema.
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS shared (
    id          TEXT PRIMARY KEY,
    answer_key  TEXT NOT NULL UNIQUE,
    shared_at   TEXT NOT NULL,
    persona_id  TEXT NOT NULL DEFAULT '',
    user        TEXT,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS shared_by_time ON shared (shared_at);
"""


def test_a_data_dir_of_the_previous_version_keeps_its_shared_records(settings):
    """A data dir written before the one database (shared.sqlite) opens, and its records are in the
    new database, imported once; the old file is kept renamed."""
    settings.data_dir.mkdir(parents=True)
    old = sqlite3.connect(settings.data_dir / "shared.sqlite")
    old.executescript(LEGACY_SCHEMA)
    recs = [make(f"old-{i}", user=f"user{i}") for i in range(3)]
    for r in recs:
        old.execute("INSERT INTO shared (id, answer_key, shared_at, persona_id, user, record) VALUES (?,?,?,?,?,?)",
                    (r.id, r.answer_key, r.shared_at, r.persona_id, r.user, r.model_dump_json()))
    old.commit()
    old.close()
    from kbchat.records.database import close_databases

    s = open_share_store(settings)
    assert [x.model_dump() for x in s.list()] == [r.model_dump() for r in sorted(recs, key=lambda r: (r.shared_at, r.id))]
    assert (settings.data_dir / "shared.sqlite.imported").is_file() and not (settings.data_dir / "shared.sqlite").exists()
    close_databases()
    again = open_share_store(settings)  # reopening imports nothing twice
    assert len(again) == 3 and again.get(recs[0].id).user == "user0"
    close_databases()


def test_share_stores_all_fields(store):
    rec = store.share(make("msg-1"))
    got = store.get(rec.id)
    assert got == rec
    assert got.question == "A100 的記憶體頻寬是多少？"
    assert got.sources[0]["file"] == "nvidia-a100-datasheet.pdf" and got.sources[0]["page"] == 3
    assert got.settings == {"reasoning": True, "k": 5}
    assert got.shared_at.endswith("+00:00")
    assert store.get_by_key("msg-1") == rec


def test_share_twice_returns_existing_record(store):
    first = store.share(make("msg-1"))
    again = store.share(make("msg-1", question="changed"))  # new id, same answer
    assert again.id == first.id and again.question == first.question
    assert len(store.list()) == 1
    rows = sqlite3.connect(store.db.engine.url.database).execute("SELECT COUNT(*) FROM shared").fetchone()[0]
    assert rows == 1


def test_undo_by_key_and_delete_by_id(store):
    a = store.share(make("msg-1"))
    b = store.share(make("msg-2"))
    assert store.delete_by_key("msg-1") is True
    assert store.delete_by_key("msg-1") is False
    assert store.get(a.id) is None and store.get_by_key("msg-1") is None
    assert store.delete(b.id) is True
    assert store.delete(b.id) is False
    assert store.list() == []
    # after undo the same answer can be shared again
    assert store.share(make("msg-1")).answer_key == "msg-1"


def test_survives_reopen_and_uses_wal(tmp_path):
    path = tmp_path / "shared.sqlite"
    s = ShareStore(path)
    rec = s.share(make("msg-1"))
    s.close()
    s2 = ShareStore(path)
    try:
        assert s2.get(rec.id) == rec
        assert s2.share(make("msg-1")).id == rec.id
        assert len(s2) == 1
    finally:
        s2.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


def test_list_oldest_first_and_filters(store):
    store.share(make("k3", shared_at="2024-06-01T08:00:00Z", persona_id="engineer"))
    store.share(make("k1", shared_at="2024-04-30T23:59:59+00:00", persona_id="sales"))
    store.share(make("k2", shared_at="2024-05-01T00:00:00+08:00", persona_id="engineer"))  # = 04-30 16:00 UTC
    assert [r.answer_key for r in store.list()] == ["k2", "k1", "k3"]
    assert [r.answer_key for r in store.list(persona="engineer")] == ["k2", "k3"]
    assert [r.answer_key for r in store.list(since="2024-05-01")] == ["k3"]
    assert [r.answer_key for r in store.list(since="2024-04-30T23:59:59Z")] == ["k1", "k3"]
    assert [r.answer_key for r in store.list(persona="sales", since="2024-05-01")] == []


def test_empty_answer_key_is_rejected():
    with pytest.raises(ValueError):
        make("  ")


def test_concurrent_threads_lose_nothing(store):
    errors = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                store.share(make(f"t{t}-{i}"))
                store.share(make(f"t{t}-{i}"))  # double press
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list()) == 100


def _process_writer(path: str, prefix: str, n: int) -> None:
    s = ShareStore(Path(path))
    try:
        for i in range(n):
            s.share(make(f"{prefix}-{i}"))
            s.share(make(f"shared-{i}"))  # both processes race on the same keys
    finally:
        s.close()


def test_concurrent_processes_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(path), p, 30)) for p in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = ShareStore(path)
    try:
        keys = [r.answer_key for r in s.list()]
    finally:
        s.close()
    assert len(keys) == len(set(keys)) == 90


def test_wal_switch_waits_for_a_lock_sqlite_would_refuse_at_once(tmp_path):
    """With no busy handler, the WAL pragma fails at once while another connection holds the
    database; enable_wal retries until the lock is gone (what two processes opening one new share
    store, or one new catalog, need)."""
    import sqlite3
    import threading

    from kbchat.records.database import enable_wal

    def locked_db(name):
        holder = sqlite3.connect(tmp_path / name, isolation_level=None, check_same_thread=False)
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        return holder, sqlite3.connect(tmp_path / name, timeout=0, isolation_level=None)

    holder, con = locked_db("late.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(con, timeout=0.2)  # a lock that outlives the timeout still fails, with SQLite's message
    holder.execute("COMMIT")

    holder, con = locked_db("new.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        con.execute("PRAGMA journal_mode=WAL")  # what happened in CI
    released = threading.Event()

    def release():
        holder.execute("COMMIT")
        released.set()

    timer = threading.Timer(0.3, release)
    timer.start()
    enable_wal(con, timeout=10)
    assert released.is_set()  # it waited for the holder instead of failing
    timer.join()
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    holder.close()

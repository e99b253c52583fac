"""Consented "Share this Q&A" records in a durable SQLite store (WAL, one writer path, no Chainlit).

One row per shared answer; ``answer_key`` (the answer message id) is UNIQUE, so sharing twice is a no-op.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypedDict

from kbchat.db import enable_wal
from kbchat.errors import KbchatError

FILE_NAME = "shared.sqlite"


class SourceRef(TypedDict):
    """One cited passage: its [n] number, file name, 1-based page and text."""

    n: int
    file: str
    page: int | None
    text: str


def utc_iso(value: datetime | date | str) -> str:
    """Normalise a datetime, date or ISO string to a sortable UTC ISO string with microseconds."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO date or time: {value!r}") from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _now() -> str:
    return utc_iso(datetime.now(timezone.utc))


class SharedQA(BaseModel):
    """One question/answer pair a user chose to share, with what produced it."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    shared_at: str = Field(default_factory=_now)
    user: str | None = None
    persona_id: str = ""
    persona_prompt: str = ""
    question: str
    answer: str
    reasoning: str = ""
    sources: list[SourceRef] = Field(default_factory=list)
    model: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    answer_key: str

    @field_validator("shared_at", mode="before")
    @classmethod
    def _utc(cls, v: Any) -> str:
        return utc_iso(v)

    @field_validator("answer_key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("answer_key must not be empty")
        return v


def default_path(settings: Any) -> Path:
    """The store file under the settings' data dir."""
    return Path(settings.data_dir) / FILE_NAME


_SCHEMA = """
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


class ShareStore:
    """SQLite store of shared Q&A records; safe across threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 30000")
        enable_wal(self._db)
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    # -- internals ---------------------------------------------------------------------------

    def _write(self):
        store = self

        class _Tx:
            def __enter__(self):
                store._lock.acquire()
                try:
                    store._conn().execute("BEGIN IMMEDIATE")
                except BaseException:
                    store._lock.release()
                    raise
                return store._db

            def __exit__(self, exc_type, exc, tb):
                try:
                    store._db.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    store._lock.release()
                return False

        return _Tx()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise KbchatError(f"share store {self.path} is closed")
        return self._db

    @staticmethod
    def _row(row) -> SharedQA | None:
        return SharedQA.model_validate_json(row[0]) if row else None

    def _one(self, sql: str, arg: str) -> SharedQA | None:
        with self._lock:
            return self._row(self._conn().execute(sql, (arg,)).fetchone())

    # -- API ---------------------------------------------------------------------------------

    def share(self, record: SharedQA) -> SharedQA:
        """Store the record unless its answer_key is already shared; return the stored record."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO shared (id, answer_key, shared_at, persona_id, user, record) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, record.answer_key, record.shared_at, record.persona_id, record.user,
                 record.model_dump_json()),
            )
            row = db.execute(
                "SELECT record FROM shared WHERE answer_key = ?", (record.answer_key,)
            ).fetchone()
        if row is None:
            raise KbchatError(f"could not share: record id {record.id} is already used by another answer")
        return self._row(row)

    def delete(self, id: str) -> bool:
        """Delete the record with this id; True when one was removed."""
        with self._write() as db:
            return db.execute("DELETE FROM shared WHERE id = ?", (id,)).rowcount > 0

    def delete_by_key(self, answer_key: str) -> bool:
        """Delete the record of this answer (the Undo button); True when one was removed."""
        with self._write() as db:
            return db.execute("DELETE FROM shared WHERE answer_key = ?", (answer_key,)).rowcount > 0

    def get(self, id: str) -> SharedQA | None:
        """The record with this id, or None."""
        return self._one("SELECT record FROM shared WHERE id = ?", id)

    def get_by_key(self, answer_key: str) -> SharedQA | None:
        """The record shared for this answer, or None."""
        return self._one("SELECT record FROM shared WHERE answer_key = ?", answer_key)

    def list(self, persona: str | None = None, since: datetime | date | str | None = None) -> list[SharedQA]:
        """Records oldest first, optionally only one persona's and only those shared at or after ``since``."""
        sql, args = "SELECT record FROM shared WHERE 1=1", []
        if persona:
            sql += " AND persona_id = ?"
            args.append(persona)
        if since is not None:
            sql += " AND shared_at >= ?"
            args.append(utc_iso(since))
        sql += " ORDER BY shared_at, rowid"
        with self._lock:
            rows = self._conn().execute(sql, args).fetchall()
        return [SharedQA.model_validate_json(r[0]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return self._conn().execute("SELECT COUNT(*) FROM shared").fetchone()[0]

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ShareStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


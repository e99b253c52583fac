"""Consented "Share this Q&A" records, stored in the kbchat database (table ``shared``; no Chainlit).

One row per shared answer; ``answer_key`` (the answer message id) is UNIQUE, so sharing twice is a no-op.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator
from typing_extensions import TypedDict

from kbchat.errors import KbchatError

if TYPE_CHECKING:
    from kbchat.database import Database


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


def open_share_store(settings: Any) -> "ShareStore":
    """The share store in the settings' database (KBCHAT_DATABASE_URL or the data dir's SQLite file)."""
    from kbchat.database import open_database

    return ShareStore(open_database(settings))


class ShareStore:
    """Shared Q&A records in the kbchat database (table ``shared``); safe across threads and processes."""

    def __init__(self, db: "Database | str | Path"):
        """``db``: the kbchat Database, a SQLAlchemy URL, or the path of a SQLite file."""
        from kbchat.database import Database

        if isinstance(db, Path):
            db = f"sqlite:///{db.resolve()}"
        self.db = Database(db) if isinstance(db, str) else db
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise KbchatError("share store is closed")

    @staticmethod
    def _record(row) -> SharedQA | None:
        return SharedQA.model_validate_json(row["record"]) if row else None

    def _one(self, where) -> SharedQA | None:
        from kbchat.database import shared

        self._check()
        with self.db.connect() as conn:
            return self._record(conn.execute(shared.select().where(where)).mappings().first())

    # -- API ---------------------------------------------------------------------------------

    def share(self, record: SharedQA) -> SharedQA:
        """Store the record unless its answer_key is already shared; return the stored record."""
        from sqlalchemy.exc import IntegrityError

        from kbchat.database import shared

        self._check()
        try:
            with self.db.begin() as conn:
                if conn.execute(shared.select().where(shared.c.answer_key == record.answer_key)).first() is None:
                    conn.execute(shared.insert().values(
                        id=record.id, answer_key=record.answer_key, shared_at=record.shared_at,
                        persona_id=record.persona_id, shared_by=record.user, record=record.model_dump_json()))
        except IntegrityError:
            pass  # another writer stored this answer (or this id) between our check and insert
        stored = self.get_by_key(record.answer_key)
        if stored is None:
            raise KbchatError(f"could not share: record id {record.id} is already used by another answer")
        return stored

    def delete(self, id: str) -> bool:
        """Delete the record with this id; True when one was removed."""
        from kbchat.database import shared

        self._check()
        with self.db.begin() as conn:
            return conn.execute(shared.delete().where(shared.c.id == id)).rowcount > 0

    def delete_by_key(self, answer_key: str) -> bool:
        """Delete the record of this answer (the Undo button); True when one was removed."""
        from kbchat.database import shared

        self._check()
        with self.db.begin() as conn:
            return conn.execute(shared.delete().where(shared.c.answer_key == answer_key)).rowcount > 0

    def get(self, id: str) -> SharedQA | None:
        """The record with this id, or None."""
        from kbchat.database import shared

        return self._one(shared.c.id == id)

    def get_by_key(self, answer_key: str) -> SharedQA | None:
        """The record shared for this answer, or None."""
        from kbchat.database import shared

        return self._one(shared.c.answer_key == answer_key)

    def shared_keys(self, answer_keys: list[str]) -> set[str]:
        """Which of these answers are shared (a resumed thread's Share / Shared state)."""
        from kbchat.database import shared

        self._check()
        if not answer_keys:
            return set()
        with self.db.connect() as conn:
            rows = conn.execute(shared.select().with_only_columns(shared.c.answer_key)
                                .where(shared.c.answer_key.in_(answer_keys)))
            return {r[0] for r in rows}

    def list(self, persona: str | None = None, since: datetime | date | str | None = None,
             user: str | None = None) -> list[SharedQA]:
        """Records oldest first, optionally only one persona's, one user's, and only those shared at or
        after ``since``."""
        from kbchat.database import shared

        self._check()
        q = shared.select()
        if persona:
            q = q.where(shared.c.persona_id == persona)
        if user:
            q = q.where(shared.c.shared_by == user)
        if since is not None:
            q = q.where(shared.c.shared_at >= utc_iso(since))
        q = q.order_by(shared.c.shared_at, shared.c.id)
        with self.db.connect() as conn:
            return [self._record(r) for r in conn.execute(q).mappings()]

    def __len__(self) -> int:
        from sqlalchemy import func, select

        from kbchat.database import shared

        self._check()
        with self.db.connect() as conn:
            return conn.execute(select(func.count()).select_from(shared)).scalar_one()

    def close(self) -> None:
        """Stop using the store (idempotent). The database engine stays with its owner."""
        self._closed = True

    def __enter__(self) -> ShareStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

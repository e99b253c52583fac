"""Consented "Share this Q&A" records and imported QA pairs, stored in the kbchat database (table
``shared``; no Chainlit), with their review: pending until an admin approves or rejects; an admin's edit of
the answer is kept beside the original.

One row per shared answer; ``answer_key`` (the answer message id) is UNIQUE, so sharing twice is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from pydantic import BaseModel, Field, field_validator
from typing_extensions import NotRequired, TypedDict

from kbchat.errors import KbchatError

if TYPE_CHECKING:
    from kbchat.records.database import Database


class SourceRef(TypedDict):
    """One cited passage: its [n] number, file name, 1-based page and text; ``collection``: the store
    collection it came from (kb-NAME, thread-<id>), absent in records shared before access control;
    ``page_label``: the printed page label, or "row N" for a row of an imported QA sheet."""

    n: int
    file: str
    page: int | None
    text: str
    collection: NotRequired[str]
    page_label: NotRequired[str | None]


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


STATUSES = ("pending", "approved", "rejected")
Status = Literal["pending", "approved", "rejected"]


def qa_hash(question: str, context: str, answer: str) -> str:
    """Identity of a pair for exact-duplicate checks: question, input and answer (outer blanks ignored)."""
    key = json.dumps([question.strip(), context.strip(), answer.strip()], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


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
    # review and provenance (columns of the shared table; the JSON keeps what was shared or imported)
    status: Status = "pending"
    origin: Literal["share", "import"] = "share"
    source: str = ""                    # an import's source name (--source, default the file name)
    reviewed_by: str | None = None
    reviewed_at: str | None = None
    edited_answer: str | None = None    # an admin's edit; ``answer`` stays the original
    context: str = ""                   # an imported pair's input column, verbatim (exports give it back)

    @property
    def final_answer(self) -> str:
        """The answer an export writes: the admin's edit if there is one, else the original."""
        return self.edited_answer if self.edited_answer is not None else self.answer

    @property
    def hash(self) -> str:
        """qa_hash of the original question, input and answer."""
        return qa_hash(self.question, self.context, self.answer)

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


DUPLICATES_KEY = "shared_duplicates_skipped"


def _status(value: str) -> str:
    if value not in STATUSES:
        raise KbchatError(f"unknown status {value!r} (use {', '.join(STATUSES)})")
    return value


def open_share_store(settings: Any) -> "ShareStore":
    """The share store in the settings' database (KBCHAT_DATABASE_URL or the data dir's SQLite file)."""
    from kbchat.records.database import open_database

    return ShareStore(open_database(settings))


class ShareStore:
    """Shared Q&A records in the kbchat database (table ``shared``); safe across threads and processes."""

    def __init__(self, db: "Database | str | Path"):
        """``db``: the kbchat Database, a SQLAlchemy URL, or the path of a SQLite file."""
        from kbchat.records.database import Database

        if isinstance(db, Path):
            db = f"sqlite:///{db.resolve()}"
        self.db = Database(db) if isinstance(db, str) else db
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise KbchatError("share store is closed")

    @staticmethod
    def _record(row) -> SharedQA | None:
        if not row:
            return None
        record = SharedQA.model_validate_json(row["record"])
        # the columns are the truth for what changes after sharing (the JSON is what was shared)
        return record.model_copy(update={
            "status": row.get("status") or "pending", "origin": row.get("origin") or "share",
            "source": row.get("source") or "", "reviewed_by": row.get("reviewed_by"),
            "reviewed_at": row.get("reviewed_at"), "edited_answer": row.get("edited_answer")})

    @staticmethod
    def _values(record: SharedQA) -> dict[str, Any]:
        return dict(id=record.id, answer_key=record.answer_key, shared_at=record.shared_at,
                    persona_id=record.persona_id, shared_by=record.user, record=record.model_dump_json(),
                    status=record.status, origin=record.origin, source=record.source or None,
                    reviewed_by=record.reviewed_by, reviewed_at=record.reviewed_at,
                    edited_answer=record.edited_answer, qa_hash=record.hash)

    def _one(self, where) -> SharedQA | None:
        from kbchat.records.database import shared

        self._check()
        with self.db.connect() as conn:
            return self._record(conn.execute(shared.select().where(where)).mappings().first())

    # -- API ---------------------------------------------------------------------------------

    def share(self, record: SharedQA) -> SharedQA:
        """Store the record unless its answer_key is already shared; return the stored record."""
        from sqlalchemy.exc import IntegrityError

        from kbchat.records.database import shared

        self._check()
        try:
            with self.db.begin() as conn:
                if conn.execute(shared.select().where(shared.c.answer_key == record.answer_key)).first() is None:
                    conn.execute(shared.insert().values(**self._values(record)))
        except IntegrityError:
            pass  # another writer stored this answer (or this id) between our check and insert
        stored = self.get_by_key(record.answer_key)
        if stored is None:
            raise KbchatError(f"could not share: record id {record.id} is already used by another answer")
        return stored

    def delete(self, id: str) -> bool:
        """Delete the record with this id; True when one was removed."""
        from kbchat.records.database import shared

        self._check()
        with self.db.begin() as conn:
            return conn.execute(shared.delete().where(shared.c.id == id)).rowcount > 0

    def delete_by_key(self, answer_key: str) -> bool:
        """Delete the record of this answer (the Undo button); True when one was removed."""
        from kbchat.records.database import shared

        self._check()
        with self.db.begin() as conn:
            return conn.execute(shared.delete().where(shared.c.answer_key == answer_key)).rowcount > 0

    def get(self, id: str) -> SharedQA | None:
        """The record with this id, or None."""
        from kbchat.records.database import shared

        return self._one(shared.c.id == id)

    def get_by_key(self, answer_key: str) -> SharedQA | None:
        """The record shared for this answer, or None."""
        from kbchat.records.database import shared

        return self._one(shared.c.answer_key == answer_key)

    def shared_keys(self, answer_keys: list[str]) -> set[str]:
        """Which of these answers are shared (a resumed thread's Share / Shared state)."""
        from kbchat.records.database import shared

        self._check()
        if not answer_keys:
            return set()
        with self.db.connect() as conn:
            rows = conn.execute(shared.select().with_only_columns(shared.c.answer_key)
                                .where(shared.c.answer_key.in_(answer_keys)))
            return {r[0] for r in rows}

    def list(self, persona: str | None = None, since: datetime | date | str | None = None,
             user: str | None = None, status: str | None = None) -> list[SharedQA]:
        """Records oldest first, optionally only one persona's, one user's, one status's (None or "all":
        every status), and only those shared at or after ``since``."""
        from kbchat.records.database import shared

        self._check()
        q = shared.select()
        if status and status != "all":
            q = q.where(shared.c.status == _status(status))
        if persona:
            q = q.where(shared.c.persona_id == persona)
        if user:
            q = q.where(shared.c.shared_by == user)
        if since is not None:
            q = q.where(shared.c.shared_at >= utc_iso(since))
        q = q.order_by(shared.c.shared_at, shared.c.id)
        with self.db.connect() as conn:
            return [self._record(r) for r in conn.execute(q).mappings()]

    # -- review ------------------------------------------------------------------------------

    def count(self, status: str | None = None) -> int:
        """How many records (of one status)."""
        from sqlalchemy import func, select

        from kbchat.records.database import shared

        self._check()
        q = select(func.count()).select_from(shared)
        if status and status != "all":
            q = q.where(shared.c.status == _status(status))
        with self.db.connect() as conn:
            return conn.execute(q).scalar_one()

    def next_pending(self, skip: Iterable[str] = ()) -> SharedQA | None:
        """The oldest pending record (not one of ``skip``), or None."""
        from kbchat.records.database import shared

        self._check()
        q = shared.select().where(shared.c.status == "pending")
        skip = list(skip)
        if skip:
            q = q.where(shared.c.id.not_in(skip))
        q = q.order_by(shared.c.shared_at, shared.c.id).limit(1)
        with self.db.connect() as conn:
            return self._record(conn.execute(q).mappings().first())

    def review(self, id: str, status: str, by: str | None) -> SharedQA | None:
        """Set a record's status (approve, reject, or back to pending) as ``by``; the updated record, or
        None when there is no such record."""
        from kbchat.records.database import shared

        self._check()
        status = _status(status)
        with self.db.begin() as conn:
            done = conn.execute(shared.update().where(shared.c.id == id).values(
                status=status, reviewed_by=by if status != "pending" else None,
                reviewed_at=_now() if status != "pending" else None)).rowcount
        return self.get(id) if done else None

    def edit(self, id: str, answer: str, by: str | None) -> SharedQA | None:
        """Keep ``answer`` as the admin's edit beside the original (the same text as the original clears
        the edit); the record stays in its status. None when there is no such record."""
        from kbchat.records.database import shared

        self._check()
        if not answer.strip():
            raise KbchatError("the edited answer is empty")
        current = self.get(id)
        if current is None:
            return None
        edited = None if answer == current.answer else answer
        with self.db.begin() as conn:
            conn.execute(shared.update().where(shared.c.id == id).values(
                edited_answer=edited, reviewed_by=by, reviewed_at=_now()))
        return self.get(id)

    def add_many(self, records: list[SharedQA]) -> tuple[list[SharedQA], int]:
        """Insert records (an import) in ONE transaction, skipping exact duplicates of each other and of
        records already stored (same question, input and answer). Returns (added, duplicates skipped);
        the running total of skipped duplicates is kept for ``kbchat shared stats``."""
        from sqlalchemy import select

        from kbchat.records.database import shared

        self._check()
        added: list[SharedQA] = []
        duplicates = 0
        with self.db.begin() as conn:
            self._fill_hashes(conn)
            seen = {r[0] for r in conn.execute(select(shared.c.qa_hash).where(shared.c.qa_hash.is_not(None)))}
            for record in records:
                h = record.hash
                if h in seen:
                    duplicates += 1
                    continue
                seen.add(h)
                conn.execute(shared.insert().values(**self._values(record)))
                added.append(record)
            if duplicates:
                from kbchat.records.database import kv

                row = conn.execute(kv.select().where(kv.c.key == DUPLICATES_KEY)).mappings().first()
                self.db.set_meta(conn, DUPLICATES_KEY, str(int(row["value"] if row else 0) + duplicates))
        return added, duplicates

    def duplicates_skipped(self) -> int:
        """Exact duplicates skipped by imports so far."""
        return int(self.db.get_meta(DUPLICATES_KEY) or 0)

    def _fill_hashes(self, conn) -> None:
        """qa_hash of rows written without one (e.g. a legacy shared.sqlite imported after migration)."""
        from sqlalchemy import select

        from kbchat.records.database import shared

        rows = conn.execute(select(shared.c.id, shared.c.record).where(shared.c.qa_hash.is_(None))).all()
        for id_, record in rows:
            h = SharedQA.model_validate_json(record).hash
            conn.execute(shared.update().where(shared.c.id == id_).values(qa_hash=h))

    def __len__(self) -> int:
        from sqlalchemy import func, select

        from kbchat.records.database import shared

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

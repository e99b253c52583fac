"""Chat history in the kbchat database: threads with their steps, elements and feedback (in the shapes
Chainlit's data layer exchanges, as plain dicts), the answer records a resumed thread is rebuilt from,
and a thread's uploads, which belong to the thread and its owner. No Chainlit import: the UI layer's
data layer (kbchat/ui/datalayer.py) calls this, and so does the CLI when it removes a user.

Every write raises on failure (nothing is swallowed); callers log and surface it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from kbchat.records.database import Database, answers, elements, feedbacks, now_iso, steps, threads, uploads

log = logging.getLogger("kbchat")

# Thread metadata keys never stored: Chainlit's "share thread" switch would make a thread readable by
# anyone who has its link, without login; in kbchat only "Share this Q&A" lets anything out.
_PRIVATE_ONLY = ("is_shared", "shared_at")


def thread_collection(thread_id: str) -> str:
    """Name of the collection holding a thread's uploads."""
    return f"thread-{thread_id}"


def uploads_root(data_dir: Path, uploads_dir: Path | None = None) -> Path:
    """Folder of the uploaded files, one sub-folder per thread: ``uploads_dir`` (KBCHAT_UPLOADS_DIR, a folder
    every replica mounts) or <data_dir>/uploads."""
    return Path(uploads_dir) if uploads_dir else Path(data_dir) / "uploads"


class History:
    """Threads, steps, elements, feedback, answers and uploads (all dicts in, dicts out)."""

    def __init__(self, db: Database):
        self.db = db

    # ---------------------------------------------------------------- threads

    def thread_owner(self, thread_id: str) -> str | None:
        """The user name owning a thread, or None (unknown thread, or not yet bound to a user)."""
        with self.db.connect() as c:
            return c.execute(select(threads.c.user_identifier).where(threads.c.id == thread_id)).scalar()

    def upsert_thread(self, thread_id: str, **kw) -> None:
        """Create or update a thread (name, user_id, user_identifier, metadata, tags). The owner of a
        thread is set once and never changes; metadata is merged into what is stored."""
        _retry(self._upsert_thread, thread_id, **kw)

    def _upsert_thread(self, thread_id: str, *, name: str | None = None, user_id: str | None = None,
                       user_identifier: str | None = None, metadata: dict | None = None,
                       tags: list[str] | None = None) -> None:
        now = now_iso()
        meta_in = {k: v for k, v in (metadata or {}).items() if k not in _PRIVATE_ONLY}
        with self.db.begin() as c:
            row = c.execute(threads.select().where(threads.c.id == thread_id)).mappings().first()
            if row is None:
                _insert_thread_row(c, thread_id)
                row = c.execute(threads.select().where(threads.c.id == thread_id)).mappings().first()
            if row["user_identifier"] and user_identifier and row["user_identifier"] != user_identifier:
                raise PermissionError(f"thread {thread_id} belongs to another user")
            values: dict[str, Any] = {"updated_at": now}
            if name is not None:
                values["name"] = name
            if user_identifier and not row["user_identifier"]:
                values.update(user_id=user_id, user_identifier=user_identifier)
            if tags is not None:
                values["tags"] = tags
            if metadata is not None:
                values["meta"] = {**(row["meta"] or {}), **meta_in}
            c.execute(threads.update().where(threads.c.id == thread_id).values(**values))

    def _thread_dict(self, row, steps_: list[dict], elements_: list[dict]) -> dict:
        return {"id": row["id"], "createdAt": row["created_at"], "name": row["name"],
                "userId": row["user_id"], "userIdentifier": row["user_identifier"],
                "tags": row["tags"] or [], "metadata": dict(row["meta"] or {}),
                "steps": steps_, "elements": elements_}

    def get_thread(self, thread_id: str) -> dict | None:
        """The thread with its steps (oldest first, each with its feedback) and elements, or None."""
        with self.db.connect() as c:
            row = c.execute(threads.select().where(threads.c.id == thread_id)).mappings().first()
            if row is None:
                return None
            fb = {r["for_id"]: {"id": r["id"], "forId": r["for_id"], "threadId": r["thread_id"],
                                "value": r["value"], "comment": r["comment"]}
                  for r in c.execute(feedbacks.select().where(feedbacks.c.thread_id == thread_id)).mappings()}
            out_steps = []
            for r in c.execute(steps.select().where(steps.c.thread_id == thread_id)
                               .order_by(steps.c.created_at, steps.c.seq)).mappings():
                d = dict(r["data"])
                if r["id"] in fb:
                    d["feedback"] = fb[r["id"]]
                out_steps.append(d)
            out_elements = [dict(r["data"]) for r in c.execute(
                elements.select().where(elements.c.thread_id == thread_id)).mappings()]
        return self._thread_dict(row, out_steps, out_elements)

    def list_threads(self, *, user_identifier: str | None, search: str | None = None,
                     feedback: int | None = None, first: int = 20, cursor: str | None = None,
                     everyone: bool = False) -> tuple[list[dict], bool]:
        """A page of threads, newest first, without their steps: a user's own, or everyone's when
        ``everyone`` (admin listing). Returns (threads, has_next_page)."""
        q = threads.select()
        if not everyone:
            q = q.where(threads.c.user_identifier == user_identifier)
        else:
            q = q.where(threads.c.user_identifier.is_not(None))
        if search:
            q = q.where(threads.c.name.ilike(f"%{search}%"))
        if feedback is not None:
            q = q.where(threads.c.id.in_(select(feedbacks.c.thread_id).where(feedbacks.c.value == feedback)))
        with self.db.connect() as c:
            if cursor:
                at = c.execute(select(threads.c.created_at).where(threads.c.id == cursor)).scalar()
                if at is not None:
                    q = q.where(or_(threads.c.created_at < at,
                                    (threads.c.created_at == at) & (threads.c.id < cursor)))
            rows = c.execute(q.order_by(threads.c.created_at.desc(), threads.c.id.desc())
                             .limit(max(1, first) + 1)).mappings().all()
        page = [self._thread_dict(r, [], []) for r in rows[:first]]
        return page, len(rows) > first

    def thread_ids_of(self, user_identifier: str) -> list[str]:
        """Every thread id of a user (to delete them with the user)."""
        with self.db.connect() as c:
            return [r[0] for r in c.execute(select(threads.c.id).where(threads.c.user_identifier == user_identifier))]

    def delete_thread_rows(self, thread_id: str) -> list[dict]:
        """Delete a thread and everything stored for it; returns its upload rows (whose files and
        collection the caller removes: see delete_thread)."""
        with self.db.begin() as c:
            ups = [dict(r) for r in c.execute(uploads.select().where(uploads.c.thread_id == thread_id)).mappings()]
            for table in (feedbacks, elements, steps, answers, uploads):
                c.execute(table.delete().where(table.c.thread_id == thread_id))
            c.execute(threads.delete().where(threads.c.id == thread_id))
        return ups

    # ---------------------------------------------------------------- steps

    def upsert_step(self, step: dict) -> None:
        """Create or update a step (Chainlit's StepDict, stored whole)."""
        _retry(self._upsert_step, step)

    def _upsert_step(self, step: dict) -> None:
        thread_id = step.get("threadId")
        if not thread_id:
            raise ValueError(f"step {step.get('id')} has no threadId")
        with self.db.begin() as c:
            if c.execute(select(threads.c.id).where(threads.c.id == thread_id)).first() is None:
                _insert_thread_row(c, thread_id)
            row = c.execute(steps.select().where(steps.c.id == step["id"])).mappings().first()
            if row is None:
                seq = (c.execute(select(func.max(steps.c.seq)).where(steps.c.thread_id == thread_id)).scalar() or 0) + 1
                c.execute(steps.insert().values(id=step["id"], thread_id=thread_id, parent_id=step.get("parentId"),
                                                type=step.get("type"), created_at=step.get("createdAt") or now_iso(),
                                                seq=seq, data=_clean(step)))
            else:
                if row["thread_id"] != thread_id:
                    raise PermissionError(f"step {step['id']} belongs to another thread")
                merged = {**row["data"], **{k: v for k, v in _clean(step).items() if v is not None}}
                c.execute(steps.update().where(steps.c.id == step["id"]).values(
                    data=merged, type=merged.get("type"), parent_id=merged.get("parentId")))

    def delete_step(self, step_id: str) -> None:
        with self.db.begin() as c:
            c.execute(feedbacks.delete().where(feedbacks.c.for_id == step_id))
            c.execute(elements.delete().where(elements.c.for_id == step_id))
            c.execute(steps.delete().where(steps.c.id == step_id))

    def step_thread(self, step_id: str) -> str | None:
        with self.db.connect() as c:
            return c.execute(select(steps.c.thread_id).where(steps.c.id == step_id)).scalar()

    # ---------------------------------------------------------------- elements

    def upsert_element(self, element: dict) -> None:
        """Create or update an element (Chainlit's ElementDict, stored whole)."""
        with self.db.begin() as c:
            c.execute(elements.delete().where(elements.c.id == element["id"]))
            c.execute(elements.insert().values(id=element["id"], thread_id=element.get("threadId"),
                                               for_id=element.get("forId"), data=_clean(element)))

    def get_element(self, thread_id: str, element_id: str) -> dict | None:
        with self.db.connect() as c:
            row = c.execute(elements.select().where(elements.c.id == element_id,
                                                    elements.c.thread_id == thread_id)).mappings().first()
        return dict(row["data"]) if row else None

    def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        with self.db.begin() as c:
            q = elements.delete().where(elements.c.id == element_id)
            if thread_id:
                q = q.where(elements.c.thread_id == thread_id)
            c.execute(q)

    # ---------------------------------------------------------------- feedback

    def upsert_feedback(self, *, for_id: str, value: int, comment: str | None = None,
                        feedback_id: str | None = None) -> str:
        """Thumbs up (1) or down (0) on a step; one per step. Returns the feedback id."""
        import uuid

        thread_id = self.step_thread(for_id)
        with self.db.begin() as c:
            row = c.execute(feedbacks.select().where(feedbacks.c.for_id == for_id)).mappings().first()
            if row is None:
                fid = feedback_id or str(uuid.uuid4())
                c.execute(feedbacks.insert().values(id=fid, for_id=for_id, thread_id=thread_id,
                                                    value=int(value), comment=comment))
                return fid
            c.execute(feedbacks.update().where(feedbacks.c.id == row["id"]).values(
                value=int(value), comment=comment, thread_id=thread_id))
            return row["id"]

    def feedback_thread(self, feedback_id: str) -> str | None:
        with self.db.connect() as c:
            return c.execute(select(feedbacks.c.thread_id).where(feedbacks.c.id == feedback_id)).scalar()

    def delete_feedback(self, feedback_id: str) -> bool:
        with self.db.begin() as c:
            return c.execute(feedbacks.delete().where(feedbacks.c.id == feedback_id)).rowcount > 0

    # ---------------------------------------------------------------- answers

    def save_answer(self, answer_id: str, thread_id: str, record: dict) -> None:
        """What an answer was made of (JSON-able dict), for follow-ups and sharing after a resume."""
        with self.db.begin() as c:
            c.execute(answers.delete().where(answers.c.id == answer_id))
            c.execute(answers.insert().values(id=answer_id, thread_id=thread_id, created_at=now_iso(),
                                              record=record))

    def answers(self, thread_id: str) -> list[tuple[str, dict]]:
        """(answer id, record) of a thread, oldest first."""
        with self.db.connect() as c:
            return [(r["id"], dict(r["record"])) for r in c.execute(
                answers.select().where(answers.c.thread_id == thread_id).order_by(answers.c.created_at)).mappings()]

    def answer(self, answer_id: str) -> tuple[str, dict] | None:
        """(thread id, record) of one answer, or None."""
        with self.db.connect() as c:
            r = c.execute(answers.select().where(answers.c.id == answer_id)).mappings().first()
        return (r["thread_id"], dict(r["record"])) if r else None

    def answer_records(self, since: str, until: str | None = None) -> list[dict]:
        """The answer records saved at or after ``since`` (and before ``until``), oldest first (usage)."""
        q = select(answers.c.record).where(answers.c.created_at >= since)
        if until:
            q = q.where(answers.c.created_at < until)
        with self.db.connect() as c:
            return [dict(r[0]) for r in c.execute(q.order_by(answers.c.created_at))]

    # ---------------------------------------------------------------- uploads

    def add_upload(self, thread_id: str, doc_hash: str, *, name: str, path: str, owner: str | None) -> None:
        with self.db.begin() as c:
            c.execute(uploads.delete().where(uploads.c.thread_id == thread_id, uploads.c.doc_hash == doc_hash))
            c.execute(uploads.insert().values(thread_id=thread_id, doc_hash=doc_hash, name=name, path=path,
                                              owner=owner, created_at=now_iso()))

    def uploads(self, thread_id: str) -> list[dict]:
        with self.db.connect() as c:
            return [dict(r) for r in c.execute(uploads.select().where(uploads.c.thread_id == thread_id)
                                               .order_by(uploads.c.created_at)).mappings()]

    def upload(self, thread_id: str, doc_hash: str) -> dict | None:
        with self.db.connect() as c:
            r = c.execute(uploads.select().where(uploads.c.thread_id == thread_id,
                                                 uploads.c.doc_hash == doc_hash)).mappings().first()
        return dict(r) if r else None


def _insert_thread_row(c, thread_id: str) -> None:
    """An empty thread row (a racing writer in another process makes the caller retry: _retry)."""
    now = now_iso()
    c.execute(threads.insert().values(id=thread_id, created_at=now, updated_at=now, tags=[], meta={}))


def _retry(fn, *args, **kw):
    """Run a read-then-write transaction again when another process inserted the same row meanwhile."""
    for attempt in range(3):
        try:
            return fn(*args, **kw)
        except IntegrityError:
            if attempt == 2:
                raise


def _clean(d: dict) -> dict:
    """A JSON-able copy (Chainlit dicts may hold enums or other objects)."""
    import json

    return json.loads(json.dumps(d, default=str))


def delete_thread(history: History, store, data_dir: Path, thread_id: str,
                  uploads_dir: Path | None = None) -> int:
    """Delete a thread everywhere: its rows, its uploads' vectors, passages and keyword index (the
    thread's collection) and their files. ``store`` may be None when no collection is open to drop
    (then the collection folder is left for ``store.drop`` later). Returns the number of uploads removed."""
    ups = history.delete_thread_rows(thread_id)
    if store is not None:
        store.drop(thread_collection(thread_id))
    folder = uploads_root(data_dir, uploads_dir) / thread_id
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    return len(ups)


def delete_user_threads(history: History, store, data_dir: Path, user_identifier: str,
                        uploads_dir: Path | None = None) -> int:
    """Delete every thread of a user (with their uploads); returns how many threads."""
    ids = history.thread_ids_of(user_identifier)
    for tid in ids:
        delete_thread(history, store, data_dir, tid, uploads_dir)
    return len(ids)


__all__ = ["History", "delete_thread", "delete_user_threads", "thread_collection", "uploads_root"]

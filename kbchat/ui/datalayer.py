"""Chainlit's data layer on kbchat's database (kbchat.records.history): threads, steps, elements, feedback.

Written against chainlit.data.base.BaseDataLayer instead of the stock SQLAlchemyDataLayer, which drops
writes silently on 2.12 (errors caught and logged as warnings; ``modes`` dicts and ``tags`` lists
refused by SQLite; no elements without cloud storage). Here every failed write is logged as an ERROR
and raised. Chainlit runs most writes as background tasks, so the tests read each kind of record back.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chainlit.data import BaseDataLayer
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadFilter
from chainlit.user import PersistedUser
from fastapi import HTTPException

from kbchat.records.accounts import Accounts
from kbchat.records.history import History, delete_thread
from kbchat.ui import runtime
from kbchat.ui.auth import CURRENT
from kbchat.ui.runtime import log


class KbchatDataLayer(BaseDataLayer):
    """Chainlit's persistence calls, answered from kbchat's database."""

    def __init__(self):
        self.db = runtime.database()
        self.history = History(self.db)
        self.accounts = Accounts(self.db)
        # Chainlit fires writes as separate tasks (create, then updates of the same message): one writer
        # thread applies them in the order they were issued, so a late update never loses to an early one.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kbchat-history")

    async def _write(self, what: str, fn, *args) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, functools.partial(fn, *args))
        except HTTPException:
            raise
        except Exception:
            log.exception("history: %s failed", what)
            raise

    async def _run(self, what: str, fn, *args, **kw) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except HTTPException:
            raise
        except Exception:
            log.exception("history: %s failed", what)
            raise

    # ---------------------------------------------------------------- users

    async def get_user(self, identifier: str) -> PersistedUser | None:
        acct = await self._run("get_user", self.accounts.get, identifier)
        if acct is None:
            return None
        return PersistedUser(id=acct.id, identifier=acct.identifier, display_name=acct.display_name,
                             createdAt=acct.created_at, metadata={"role": acct.role})

    async def create_user(self, user) -> PersistedUser | None:
        # Accounts are created by kbchat (CLI, or the sign-in callbacks on first sight), never here.
        return await self.get_user(user.identifier)

    # ---------------------------------------------------------------- feedback

    def _require_owner(self, thread_id: str | None, what: str) -> None:
        """404 unless the signed-in user owns the thread (so existence is not revealed either)."""
        me = CURRENT.get()
        if not thread_id or me is None or self.history.thread_owner(thread_id) != me.identifier:
            raise HTTPException(status_code=404, detail=f"{what} not found")

    async def upsert_feedback(self, feedback: Feedback) -> str:
        # Chainlit's PUT /feedback checks no ownership: only the thread's owner may rate its messages.
        await asyncio.to_thread(lambda: self._require_owner(self.history.step_thread(feedback.forId), "Message"))
        return await self._write("upsert_feedback", functools.partial(
            self.history.upsert_feedback, for_id=feedback.forId, value=feedback.value, comment=feedback.comment,
            feedback_id=feedback.id))

    async def delete_feedback(self, feedback_id: str) -> bool:
        def check_and_delete():
            self._require_owner(self.history.feedback_thread(feedback_id), "Feedback")
            return self.history.delete_feedback(feedback_id)

        return await self._write("delete_feedback", check_and_delete)

    # ---------------------------------------------------------------- elements

    async def create_element(self, element) -> None:
        d = element.to_dict()
        if not d.get("url") or not d.get("threadId"):
            # Files that live only in Chainlit's per-session folder (e.g. the attachment chips of a
            # user message) cannot be served after the session; kbchat's Sources are URL elements.
            return
        await self._write("create_element", self.history.upsert_element, d)

    async def get_element(self, thread_id: str, element_id: str):
        return await self._run("get_element", self.history.get_element, thread_id, element_id)

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        await self._write("delete_element", self.history.delete_element, element_id, thread_id)

    # ---------------------------------------------------------------- steps

    async def create_step(self, step_dict) -> None:
        await self._write("create_step", self.history.upsert_step, dict(step_dict))

    async def update_step(self, step_dict) -> None:
        await self._write("update_step", self.history.upsert_step, dict(step_dict))

    async def delete_step(self, step_id: str) -> None:
        await self._write("delete_step", self.history.delete_step, step_id)

    # ---------------------------------------------------------------- threads

    async def get_thread_author(self, thread_id: str) -> str:
        return await self._run("get_thread_author", self.history.thread_owner, thread_id) or ""

    async def delete_thread(self, thread_id: str) -> None:
        # Chainlit checked that the caller owns it. Its uploads go with it (vectors, passages, files).
        c = runtime.core()

        def locked_delete() -> int:
            with c.write_lock:
                return delete_thread(self.history, c.store, c.settings.data_dir, thread_id,
                                     c.settings.uploads_dir)

        n = await self._write("delete_thread", locked_delete)
        log.info("thread %s deleted with %d upload(s)", thread_id, n)

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse:
        acct = await self._run("list_threads", self.accounts.get_by_id, filters.userId) if filters.userId else None
        if acct is None:
            return PaginatedResponse(data=[], pageInfo=PageInfo(hasNextPage=False, startCursor=None, endCursor=None))
        rows, has_next = await self._run(
            "list_threads", self.history.list_threads, user_identifier=acct.identifier, search=filters.search,
            feedback=filters.feedback, first=pagination.first or 20, cursor=pagination.cursor)
        return PaginatedResponse(data=rows, pageInfo=PageInfo(
            hasNextPage=has_next, startCursor=rows[0]["id"] if rows else None,
            endCursor=rows[-1]["id"] if rows else None))

    async def get_thread(self, thread_id: str):
        return await self._run("get_thread", self.history.get_thread, thread_id)

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict | None = None, tags: list[str] | None = None) -> None:
        identifier = None
        if user_id:
            acct = await self._run("update_thread", self.accounts.get_by_id, user_id)
            identifier = acct.identifier if acct else None
        await self._write("update_thread", functools.partial(
            self.history.upsert_thread, thread_id, name=name, user_id=user_id, user_identifier=identifier,
            metadata=metadata, tags=tags))

    async def build_debug_url(self) -> str:
        return ""

    async def get_favorite_steps(self, user_id: str) -> list:
        return []

    async def close(self) -> None:
        return None

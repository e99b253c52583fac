"""Who may read what, asked for the chat's signed-in user: the personas they see, the bases a question
searches, which cited passages they may see, the question quota and the audit lines of the chat's actions.
The rules are kbchat.records.access and kbchat.knowledge; each answer is read from the database when asked
(in a thread), so an access change applies to the next question on every replica."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import chainlit as cl

from kbchat.knowledge import Reader, base_names, may_read_collection, readable_bases, reader_of
from kbchat.messages import t
from kbchat.records.access import Quota
from kbchat.ui.runtime import Core, core, log


def reader_for(c: Core, name: str | None) -> Reader:
    """The Reader of user ``name`` as the database has them now (sync: call it in a thread)."""
    return reader_of(c.accounts, name)


# ---------------------------------------------------------------- personas


def visible_personas(c: Core, name: str | None) -> list:
    """The personas user ``name`` sees in the menu and may select (admins: all), default first."""
    r = reader_for(c, name)
    groups = c.access.user_groups(r.name) if r.name and not r.is_admin else set()
    return [p for p in c.personas.values() if p.visible(groups, r.is_admin)]


def choose_persona(c: Core, name: str | None, wanted: str | None) -> tuple[str | None, bool]:
    """(the persona a chat of ``name`` runs with, whether ``wanted`` was refused). A persona the user may
    not see is never chosen: the chat gets the default one they see instead (None if they see none)."""
    seen = visible_personas(c, name)
    ids = [p.id for p in seen]
    if wanted in ids:
        return wanted, False
    fallback = next((p.id for p in seen if p.default), ids[0] if ids else None)
    refused = bool(wanted) and wanted in c.personas  # an unknown id is not a refusal, just the default
    if refused:
        log.warning("persona %r refused for %r (not visible to them); using %r", wanted, name, fallback)
    return fallback, refused


# ---------------------------------------------------------------- bases and passages


def searchable_bases(c: Core, name: str | None, bases: list[str]) -> tuple[list[str], list[str]]:
    """(the bases of ``bases`` user ``name`` may read, the ones withheld from them)."""
    return readable_bases(c.access, reader_for(c, name), bases)


def withheld_line(lang: str, withheld: list[str], total: int) -> str:
    """The chat's one line about bases left out. A count, never the names: a user who may not read a
    base is not told that it exists or what it is called."""
    return t(lang, "kb_withheld", n=len(withheld), total=total)


def source_check(c: Core, name: str | None) -> Callable[[dict], bool]:
    """A predicate over stored sources ({"collection": ...}): whether user ``name`` may see that passage.
    A source without a collection (shared before access control) is unknown: admins only."""
    r = reader_for(c, name)
    known: dict[str, bool] = {}

    def ok(source: dict) -> bool:
        coll = source.get("collection") if isinstance(source, dict) else None
        if not isinstance(coll, str) or not coll:
            return r.is_admin
        if coll not in known:
            known[coll] = may_read_collection(c.settings, c.access, r, coll, thread_owner=c.history.thread_owner)
        return known[coll]

    return ok


def managed_bases(c: Core, name: str | None) -> list[str]:
    """The bases user ``name`` may manage in the chat (list, add and remove documents): every base for
    admins; for others the bases whose manage list names them and that they may also read (a document
    listing names the base's files, which the read rule keeps from everybody else)."""
    r = reader_for(c, name)
    names = base_names(c.settings)
    if r.is_admin:
        return names
    if not r.name:
        return []
    return [b for b in c.access.readable(r.name, False, names) if c.access.may_manage(r.name, False, b)]


# ---------------------------------------------------------------- quota


def take_question(c: Core, name: str | None) -> Quota | None:
    """Count one question of ``name`` against today's quota; None when no quota applies to them
    (no limit set, or an admin while admins are exempt). Atomic in the database (every replica)."""
    r = reader_for(c, name)
    if not r.name or (r.is_admin and not c.settings.quota_admins):
        return None
    limit = c.access.quota_limit(r.name, c.settings.quota_questions_per_day)
    if limit is None:
        return None
    return c.access.take_question(r.name, limit)


def quota_line(lang: str, q: Quota, now: datetime | None = None) -> str:
    """'You have asked your N questions for today; the quota resets at 00:00 UTC (in 5 h 12 min).'"""
    left = max(0, int((q.resets_at - (now or datetime.now(timezone.utc))).total_seconds()))
    hours, minutes = left // 3600, (left % 3600 + 59) // 60
    if minutes == 60:
        hours, minutes = hours + 1, 0
    return t(lang, "quota_over", n=q.limit or 0, at=q.resets_at.strftime("%H:%M"), hours=hours, minutes=minutes)


# ---------------------------------------------------------------- audit


def address() -> str | None:
    """The client address of the chat's socket (REMOTE_ADDR: the peer, as for sign-ins). A forwarded
    header is not taken: kbchat has no setting naming a trusted proxy, and a client can forge one."""
    try:
        environ = getattr(cl.context.session, "environ", None) or {}
    except Exception:
        return None
    return environ.get("REMOTE_ADDR") or None


def chat_user() -> str | None:
    """The chat's signed-in user name (None outside a chat or when nobody is signed in)."""
    try:
        return getattr(cl.context.session.user, "identifier", None)
    except Exception:
        return None


def chat_language() -> str:
    """The chat's UI language ("en" outside a chat)."""
    try:
        return cl.context.session.language or "en"
    except Exception:
        return "en"


async def audit(action: str, target: str | None = None, detail: dict | None = None) -> None:
    """One audit line for the chat's user (never a password or a passage's text). A failure is logged:
    the action itself has happened."""
    user, addr = chat_user(), address()
    try:
        await cl.make_async(core().access.record)(action, user, target, detail, addr)
    except Exception:
        log.exception("audit: recording %s failed", action)


__all__ = ["address", "audit", "chat_language", "chat_user", "choose_persona", "managed_bases", "quota_line", "reader_for",
           "searchable_bases", "source_check", "take_question", "visible_personas", "withheld_line"]

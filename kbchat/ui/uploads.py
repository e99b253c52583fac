"""One file added from the chat, to the chat's own collection or to a knowledge base (kbchat.uploads, in
a thread): its message shows the progress lines, then the outcome. Chat uploads and /kb additions share
this wording; naming a base only switches to the ``kb_*`` keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import chainlit as cl

from kbchat.documents.reader import check_supported, is_supported
from kbchat.errors import KbchatError
from kbchat.messages import error_text, reason_text, t
from kbchat.ui.render import md_escape
from kbchat.ui.runtime import log
from kbchat.uploads import Event, FileToAdd, Outcome, Progress

POLL_SECONDS = 0.5  # how often the message shows the file's latest progress


def progress_line(lang: str, event: Progress) -> str:
    """'Indexing NAME: 3 / 10 pages read' (or the OCR page, or passages embedded)."""
    return t(lang, event.stage, name=event.name, done=event.done, page=event.done, total=event.total)


def outcome_line(lang: str, outcome: Outcome, base: str | None = None) -> str:
    """What became of the file, in the chat's words (``kb_*`` ones when ``base`` is named), with the
    reader's notes (e.g. scanned pages skipped: what to install)."""
    kb = base is not None
    name = outcome.name
    if outcome.error is not None:
        err = outcome.error
        if not is_supported(name):
            reason = t(lang, "only_supported")
        elif getattr(err, "key", None):
            reason = error_text(lang, err)
        else:
            reason = reason_text(lang, outcome.reason)
        return t(lang, "kb_not_added" if kb else "not_indexed", name=name, base=base, reason=reason)
    doc = outcome.doc
    if outcome.status == "unchanged":
        text = t(lang, "kb_unchanged" if kb else "unchanged", name=name, base=base)
    elif outcome.status == "duplicate":
        text = t(lang, "kb_duplicate" if kb else "duplicate", name=name, base=base, other=md_escape(outcome.other))
    else:
        key = ("kb_replaced" if outcome.status == "replaced" else "kb_added") if kb else "indexed"
        text = t(lang, key, name=name, base=base, pages=doc.pages, passages=len(doc.passages),
                 secs=outcome.seconds)
    for warning in doc.warnings:
        text += f"\n\n⚠️ {warning}"
    return text


async def add_with_progress(lang: str, name: str, work: Callable[[Callable[[Event], None]], Outcome], *,
                            base: str | None = None) -> tuple[cl.Message, Outcome]:
    """Add one file: ``work(progress)`` runs kbchat.uploads.add_files (or a caller of it) in a thread and
    returns the file's Outcome; its message turns into progress lines until then, and ends with the
    outcome line. An error ``work`` raises is a failed outcome (an unexpected one is logged and named
    only by its type: never a stack trace in the chat). A type kbchat does not read is refused at once."""
    try:
        check_supported(name)
    except KbchatError as err:
        outcome = Outcome(FileToAdd(Path(name), name), error=err)
        msg = cl.Message(content=outcome_line(lang, outcome, base))
        await msg.send()
        return msg, outcome
    msg = cl.Message(content=t(lang, "kb_indexing" if base is not None else "indexing", name=name, base=base))
    await msg.send()
    latest: list[Progress] = []

    def progress(event: Event) -> None:  # called in the worker thread; the loop below shows the latest
        if isinstance(event, Progress):
            latest[:] = [event]

    task = asyncio.ensure_future(cl.make_async(work)(progress))
    shown = None
    while not task.done():
        await asyncio.wait({task}, timeout=POLL_SECONDS)
        event = latest[0] if latest else None
        if event is not None and event.total and (event.stage, event.done) != shown:
            shown = (event.stage, event.done)
            msg.content = progress_line(lang, event)
            await msg.update()
    try:
        outcome = task.result()
    except KbchatError as err:
        outcome = Outcome(FileToAdd(Path(name), name), error=err)
    except Exception as err:  # noqa: BLE001 (never a stack trace in the chat)
        log.exception("adding %s%s failed", name, f" to knowledge base {base}" if base else "")
        outcome = Outcome(FileToAdd(Path(name), name),
                          error=KbchatError(t("en", "unexpected", kind=type(err).__name__), key="unexpected",
                                            params={"kind": type(err).__name__}))
    msg.content = outcome_line(lang, outcome, base)
    await msg.update()
    return msg, outcome


__all__ = ["add_with_progress", "outcome_line", "progress_line"]

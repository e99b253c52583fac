"""The admins' review of shared Q&A in the chat (``/review``): one pending record at a time (question,
answer, cited passages with file and page, persona, who shared it, how many are left) with Approve /
Edit / Reject / Skip, and the import of a QA sheet (Import a QA sheet: upload .xlsx / .csv / .json /
.jsonl). Every action checks the admin role on the server: the buttons are only a convenience."""

from __future__ import annotations

from pathlib import Path

import chainlit as cl

from kbchat.errors import KbchatError
from kbchat.messages import place_ref
from kbchat.sharing.store import SharedQA
from kbchat.ui.auth import is_admin
from kbchat.ui.render import inert, md_escape, safe_name
from kbchat.ui.runtime import core, log

SHEET_ACCEPT = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": [".xlsx"],
    "text/csv": [".csv"],
    "application/vnd.ms-excel": [".csv"],  # what Windows browsers call a .csv
    "application/json": [".json", ".jsonl"],
    "application/jsonl": [".jsonl"],
    "application/x-ndjson": [".jsonl"],
    "text/plain": [".csv", ".json", ".jsonl"],
    "application/octet-stream": [".xlsx", ".csv", ".json", ".jsonl"],
}
EDIT_KEY = "review_editing"  # user_session: the record whose corrected answer the next message is
SKIP_KEY = "review_skipped"  # user_session: records skipped in this session (shown again next /review)
ADMIN_ONLY = "Only administrators can review shared Q&A."
MAX_PASSAGE = 300


def _user() -> str | None:
    try:
        return getattr(cl.context.session.user, "identifier", None)
    except Exception:
        return None


async def _admin() -> bool:
    return await cl.make_async(is_admin)(_user())


async def _refuse() -> dict:
    log.warning("review action refused: %r is not an administrator", _user())
    await cl.Message(content=ADMIN_ONLY).send()
    return {"ok": False, "error": "administrators only"}


def _actions(record_id: str) -> list:
    return [
        cl.Action(name="review_approve", id=f"review-approve-{record_id}", icon="check", label="Approve",
                  tooltip="Approve: kbchat export writes it", payload={"id": record_id}),
        cl.Action(name="review_edit", id=f"review-edit-{record_id}", icon="pencil", label="Edit answer",
                  tooltip="Correct the answer (the original is kept)", payload={"id": record_id}),
        cl.Action(name="review_reject", id=f"review-reject-{record_id}", icon="x", label="Reject",
                  tooltip="Reject: never exported", payload={"id": record_id}),
        cl.Action(name="review_skip", id=f"review-skip-{record_id}", icon="skip-forward", label="Skip",
                  tooltip="Decide later", payload={"id": record_id}),
    ]


def _import_action() -> cl.Action:
    return cl.Action(name="review_import", id="review-import", icon="file-up", label="Import a QA sheet",
                     tooltip=".xlsx, .csv, .json or .jsonl: rows become approved records", payload={})


def record_text(r: SharedQA, pending: int) -> str:
    """The review card of one record (Markdown; every stored text rendered inert)."""
    lines = [f"**Review shared Q&A** · **{pending} pending** (this one included)", ""]
    who = md_escape(r.user or "unknown")
    lines.append(f"Persona **{md_escape(r.persona_id or '-')}** · shared by **{who}** · "
                 f"{r.shared_at[:16].replace('T', ' ')} UTC · {r.origin}"
                 + (f" ({md_escape(r.source)})" if r.source else ""))
    lines += ["", "**Question**", "", inert(r.question), ""]
    if r.edited_answer is not None:
        lines += ["**Answer (edited — this is what export writes)**", "", inert(r.edited_answer), "",
                  "**Original answer**", "", inert(r.answer)]
    else:
        lines += ["**Answer**", "", inert(r.answer)]
    if r.sources:
        lines += ["", "**Cited passages**"]
        for i, s in enumerate(r.sources, 1):
            text = md_escape(str(s.get("text", "")))
            text = text[:MAX_PASSAGE] + ("…" if len(text) > MAX_PASSAGE else "")
            page = s.get("page")
            where = f", {place_ref('en', int(page))}" if isinstance(page, int) else ""
            lines.append(f"- [{s.get('n') or i}] {md_escape(str(s.get('file', '')))}{where}: “{text}”")
    return "\n".join(lines)


async def show_next() -> None:
    """/review: the oldest pending record not skipped in this session, or "nothing left"."""
    if not await _admin():
        await _refuse()
        return
    store = core().share_store
    skipped = cl.user_session.get(SKIP_KEY) or []
    record = await cl.make_async(store.next_pending)(skipped)
    pending = await cl.make_async(store.count)("pending")
    if record is None:
        note = f" ({pending} skipped in this session: /review again later)" if pending else ""
        await cl.Message(content=f"**Review shared Q&A** · nothing left to review{note}.",
                         actions=[_import_action()]).send()
        return
    await cl.Message(content=record_text(record, pending), actions=[*_actions(record.id), _import_action()]).send()


async def start() -> None:
    """The /review command: a fresh pass over the pending records."""
    cl.user_session.set(SKIP_KEY, [])
    cl.user_session.set(EDIT_KEY, None)
    await show_next()


async def _drop_buttons(record_id: str) -> None:
    for kind in ("approve", "edit", "reject", "skip"):
        await cl.Action(name="x", id=f"review-{kind}-{record_id}", payload={}).remove()
    await cl.Action(name="x", id="review-import", payload={}).remove()


async def _decide(action: cl.Action, status: str) -> dict:
    if not await _admin():
        return await _refuse()
    record_id = str(action.payload.get("id", ""))
    store = core().share_store
    done = await cl.make_async(store.review)(record_id, status, _user())
    if done is None:
        await cl.Message(content=f"No shared record {md_escape(record_id)} (deleted meanwhile?).").send()
        return {"ok": False, "error": "not found"}
    await _drop_buttons(record_id)
    pending = await cl.make_async(store.count)("pending")
    await cl.Message(content=f"{status.capitalize()}: “{md_escape(done.question)[:80]}” · "
                             f"**{pending} pending left**").send()
    await show_next()
    return {"ok": True, "id": record_id, "status": status, "pending": pending}


@cl.action_callback("review_approve")
async def on_approve(action: cl.Action):
    return await _decide(action, "approved")


@cl.action_callback("review_reject")
async def on_reject(action: cl.Action):
    return await _decide(action, "rejected")


@cl.action_callback("review_skip")
async def on_skip(action: cl.Action):
    if not await _admin():
        return await _refuse()
    record_id = str(action.payload.get("id", ""))
    cl.user_session.set(SKIP_KEY, [*(cl.user_session.get(SKIP_KEY) or []), record_id])
    await _drop_buttons(record_id)
    await show_next()
    return {"ok": True, "id": record_id}


@cl.action_callback("review_edit")
async def on_edit(action: cl.Action):
    if not await _admin():
        return await _refuse()
    record_id = str(action.payload.get("id", ""))
    if await cl.make_async(core().share_store.get)(record_id) is None:
        return {"ok": False, "error": "not found"}
    cl.user_session.set(EDIT_KEY, record_id)
    await cl.Message(content="Type the corrected answer as your next message (the original is kept beside "
                             "it; /review cancels).").send()
    return {"ok": True, "id": record_id}


async def take_message(message: cl.Message) -> bool:
    """A message that is an admin's corrected answer (after Edit answer): stored, the record shown again.
    False when the message is not for the review (it is then a question as usual)."""
    record_id = cl.user_session.get(EDIT_KEY)
    if not record_id:
        return False
    cl.user_session.set(EDIT_KEY, None)
    if (message.content or "").strip().startswith("/"):
        return False  # a command (e.g. /review) cancels the edit
    if not await _admin():
        await _refuse()
        return True
    store = core().share_store
    try:
        record = await cl.make_async(store.edit)(record_id, message.content or "", _user())
    except KbchatError as err:
        await cl.Message(content=f"Not edited: {err}.").send()
        return True
    if record is None:
        await cl.Message(content="That record is gone (deleted meanwhile?).").send()
        return True
    await _drop_buttons(record_id)
    pending = await cl.make_async(store.count)("pending")
    await cl.Message(content="Answer edited (not yet approved).\n\n" + record_text(record, pending),
                     actions=[*_actions(record.id), _import_action()]).send()
    return True


@cl.action_callback("review_import")
async def on_import(action: cl.Action):
    """Ask for a QA sheet and import it: rows become approved records (origin import) by this admin."""
    if not await _admin():
        return await _refuse()
    try:
        return await _ask_and_import()
    finally:
        # AskFileMessage restarts "the task" when answered (it assumes a message handler's task); an action
        # callback has none, so end it or the composer keeps showing Stop.
        await cl.context.emitter.task_end()


async def _ask_and_import() -> dict:
    files = await cl.AskFileMessage(
        content="Upload a QA sheet: **.xlsx**, **.csv**, **.json** or **.jsonl** with a header row "
                "instruction / input / output, question / answer, 問題 / 答案 or 问题 / 答案 (or a kbchat export).",
        accept=SHEET_ACCEPT, max_size_mb=50, max_files=5, timeout=600).send()
    results = []
    for f in files or []:
        result = await cl.make_async(_import_one)(Path(f.path), safe_name(f.name), _user())
        await cl.Message(content=result.pop("text")).send()
        results.append(result)
    if files:
        await show_next()
    return {"ok": True, "imported": results}


def _import_one(path: Path, name: str, by: str | None) -> dict:
    from kbchat.sharing.sheets import SheetError, import_sheet

    store = core().share_store
    try:
        result = import_sheet(path, store, by=by, name=name)
    except SheetError as err:
        lines = [str(err)]
        summary = None
    else:
        lines = result.sheet.problems
        summary = result.summary()
    text = "\n".join([f"**{md_escape(summary)}**" if summary else "**Not imported**", "",
                      *(f"- {md_escape(line)}" for line in lines)])
    return {"summary": summary, "lines": lines, "text": text}


__all__ = ["SHEET_ACCEPT", "record_text", "show_next", "start", "take_message"]

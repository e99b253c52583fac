"""The admins' review of shared Q&A in the chat (``/review``): one pending record at a time (question,
answer, cited passages with file and page, persona, who shared it, how many are left) with Approve /
Edit / Reject / Skip, and the import of a QA sheet (Import a QA sheet: upload .xlsx / .csv / .json /
.jsonl). Every action checks the admin role on the server: the buttons are only a convenience. Every line
is in the admin's UI language (kbchat.messages, review_*); stored texts are shown as they are, except a cited
passage of a base the reviewer may not read (shown as withheld). Decisions and imports are audited."""

from __future__ import annotations

import re
from pathlib import Path

import chainlit as cl

from kbchat.errors import KbchatError
from kbchat.messages import MESSAGES, place_ref, reason_text, t
from kbchat.personas import resolve_language
from kbchat.sharing.store import SharedQA
from kbchat.ui import access
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
ADMIN_ONLY = t("en", "review_admin_only")
MAX_PASSAGE = 300


def _lang() -> str:
    try:
        return cl.context.session.language or "en"
    except Exception:
        return "en"


def _user() -> str | None:
    try:
        return getattr(cl.context.session.user, "identifier", None)
    except Exception:
        return None


async def _admin() -> bool:
    return await cl.make_async(is_admin)(_user())


async def _refuse() -> dict:
    log.warning("review action refused: %r is not an administrator", _user())
    await cl.Message(content=t(_lang(), "review_admin_only")).send()
    return {"ok": False, "error": "administrators only"}


def _actions(record_id: str, lang: str = "en") -> list:
    return [
        cl.Action(name=f"review_{kind}", id=f"review-{kind}-{record_id}", icon=icon,
                  label=t(lang, f"review_{kind}"), tooltip=t(lang, f"review_{kind}_tip"), payload={"id": record_id})
        for kind, icon in (("approve", "check"), ("edit", "pencil"), ("reject", "x"), ("skip", "skip-forward"))
    ]


def _import_action(lang: str = "en") -> cl.Action:
    return cl.Action(name="review_import", id="review-import", icon="file-up", label=t(lang, "review_import"),
                     tooltip=t(lang, "review_import_tip"), payload={})


def record_text(r: SharedQA, pending: int, lang: str = "en", may_see=None) -> str:
    """The review card of one record (Markdown; every stored text rendered inert). ``may_see(source)``:
    whether the reviewer may read a cited passage (kbchat.ui.access.source_check); the others show as
    withheld, without their file or text."""
    lines = [t(lang, "review_header", pending=pending), ""]
    who = md_escape(r.user or t(lang, "review_unknown_user"))
    origin = t(lang, f"review_origin_{r.origin}") if f"review_origin_{r.origin}" in MESSAGES["en"] else r.origin
    lines.append(t(lang, "review_meta", persona=md_escape(r.persona_id or '-'), who=who,
                   when=r.shared_at[:16].replace('T', ' '), origin=origin)
                 + (f" ({md_escape(r.source)})" if r.source else ""))
    lines += ["", f"**{t(lang, 'review_question')}**", "", inert(r.question), ""]
    if r.edited_answer is not None:
        lines += [f"**{t(lang, 'review_answer_edited')}**", "", inert(r.edited_answer), "",
                  f"**{t(lang, 'review_original')}**", "", inert(r.answer)]
    else:
        lines += [f"**{t(lang, 'review_answer')}**", "", inert(r.answer)]
    if r.sources:
        lines += ["", f"**{t(lang, 'review_cited')}**"]
        for i, s in enumerate(r.sources, 1):
            if may_see is not None and not may_see(s):
                lines.append(f"- [{s.get('n') or i}] _{t(lang, 'review_withheld')}_")
                continue
            text = md_escape(str(s.get("text", "")))
            text = text[:MAX_PASSAGE] + ("…" if len(text) > MAX_PASSAGE else "")
            page = s.get("page")
            where = f", {place_ref(lang, int(page), s.get('page_label'))}" if isinstance(page, int) else ""
            lines.append(f"- [{s.get('n') or i}] {md_escape(str(s.get('file', '')))}{where}: “{text}”")
    return "\n".join(lines)


async def show_next() -> None:
    """/review: the oldest pending record not skipped in this session, or "nothing left"."""
    if not await _admin():
        await _refuse()
        return
    lang = _lang()
    store = core().share_store
    skipped = cl.user_session.get(SKIP_KEY) or []
    record = await cl.make_async(store.next_pending)(skipped)
    pending = await cl.make_async(store.count)("pending")
    if record is None:
        note = t(lang, "review_skipped_note", pending=pending) if pending else ""
        await cl.Message(content=t(lang, "review_nothing", note=note), actions=[_import_action(lang)]).send()
        return
    await cl.Message(content=await _card(record, pending, lang),
                     actions=[*_actions(record.id, lang), _import_action(lang)]).send()


async def _card(record: SharedQA, pending: int, lang: str) -> str:
    """record_text with the passages the reviewer may read (asked of the database now)."""
    may_see = await cl.make_async(access.source_check)(core(), _user())
    return await cl.make_async(record_text)(record, pending, lang, may_see)


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
    lang = _lang()
    if done is None:
        await cl.Message(content=t(lang, "review_no_record", id=md_escape(record_id))).send()
        return {"ok": False, "error": "not found"}
    await _drop_buttons(record_id)
    await access.audit({"approved": "review.approve", "rejected": "review.reject"}[status], record_id)
    pending = await cl.make_async(store.count)("pending")
    await cl.Message(content=t(lang, "review_decided", status=t(lang, f"review_{status}"),
                               question=md_escape(done.question)[:80], pending=pending)).send()
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
    await cl.Message(content=t(_lang(), "review_type_edit")).send()
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
    lang = _lang()
    store = core().share_store
    try:
        record = await cl.make_async(store.edit)(record_id, message.content or "", _user())
    except KbchatError as err:
        await cl.Message(content=t(lang, "review_not_edited", error=reason_text(lang, str(err)))).send()
        return True
    if record is None:
        await cl.Message(content=t(lang, "review_gone")).send()
        return True
    await _drop_buttons(record_id)
    await access.audit("review.edit", record_id)
    pending = await cl.make_async(store.count)("pending")
    await cl.Message(content=t(lang, "review_edited") + "\n\n" + await _card(record, pending, lang),
                     actions=[*_actions(record.id, lang), _import_action(lang)]).send()
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
    lang = _lang()
    files = await cl.AskFileMessage(content=t(lang, "review_upload_sheet"),
                                    accept=SHEET_ACCEPT, max_size_mb=50, max_files=5, timeout=600).send()
    results = []
    for f in files or []:
        result = await cl.make_async(_import_one)(Path(f.path), safe_name(f.name), _user(), lang)
        await access.audit("sheet.import", safe_name(f.name), result.pop("audit"))
        await cl.Message(content=result.pop("text")).send()
        results.append(result)
    if files:
        await show_next()
    return {"ok": True, "imported": results}


_SHEET_LINE = re.compile(r"^(?P<name>.*?): (?:row (?P<row>\d+): )?(?P<reason>.*)$", re.S)


def _sheet_line(lang: str, line: str) -> str:
    """A line of kbchat.sharing.sheets ("qa.xlsx: row 4: empty answer") in the UI language."""
    m = _SHEET_LINE.match(line)
    if resolve_language(lang, MESSAGES) == "en" or not m or m["name"] not in line[:len(m["name"])]:
        return line
    reason = reason_text(lang, m["reason"])
    if m["row"]:
        return t(lang, "sheet_row", name=m["name"], row=m["row"], reason=reason)
    return f"{m['name']}: {reason}"


def _import_one(path: Path, name: str, by: str | None, lang: str = "en") -> dict:
    from kbchat.sharing.sheets import SheetError, import_sheet

    store = core().share_store
    try:
        result = import_sheet(path, store, by=by, name=name)
    except SheetError as err:
        lines = [str(err)]
        summary = None
        counts = {"imported": 0, "error": str(err)[:200]}
    else:
        lines = result.sheet.problems
        summary = result.summary()
        counts = {"imported": len(result.added), "duplicates": result.duplicates,
                  "rejected": len(result.sheet.problems)}
    shown = summary
    if summary and resolve_language(lang, MESSAGES) != "en":
        shown = t(lang, "sheet_summary", name=result.sheet.name, added=len(result.added),
                  duplicates=result.duplicates, rejected=len(result.sheet.problems))
    text = "\n".join([f"**{md_escape(shown)}**" if shown else f"**{t(lang, 'review_not_imported')}**", "",
                      *(f"- {md_escape(_sheet_line(lang, line))}" for line in lines)])
    return {"summary": summary, "lines": lines, "text": text, "audit": counts}


__all__ = ["SHEET_ACCEPT", "record_text", "show_next", "start", "take_message"]

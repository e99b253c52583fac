"""Knowledge bases managed in the chat: the /kb command (list the bases, a base's documents, create a
base, add the attached files, remove one), "Add to knowledge base …" actions under an upload and Remove
actions under a listing. Admins manage every base and create new ones; a base's managers (``kbchat kb
access NAME --manage G``) list, add to and remove from that base only. Every step checks the user's role
and access in the database when it runs (the buttons are only a convenience: a direct call by anybody
else is refused all the same, with the same line whether the base exists or not), and every change is
written to the audit log."""

from __future__ import annotations

from pathlib import Path

import chainlit as cl

from kbchat.errors import KbchatError
from kbchat.knowledge import (
    ORIGIN_FOLDER,
    add_to_base,
    added_by_label,
    create_base,
    get_base,
    list_bases,
    read_description,
    remove_document,
    when,
)
from kbchat.messages import error_text, t
from kbchat.records.history import uploads_root
from kbchat.ui import access, uploads
from kbchat.ui.auth import is_admin
from kbchat.ui.render import md_escape, safe_name
from kbchat.ui.runtime import CHATS, core, log
from kbchat.uploads import FileToAdd

COMMAND = {"id": "kb", "icon": "library", "description": t("en", "cmd_kb"), "button": False, "persistent": False}


def command(lang: str) -> dict:
    """The /kb entry of the command menu, described in the UI language."""
    return dict(COMMAND, description=t(lang, "cmd_kb"))

DOCS_SHOWN = 50  # documents listed (each with a Remove button) per /kb NAME


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


def parse(message: cl.Message) -> list[str] | None:
    """The arguments of a /kb message (picked from the command menu or typed), or None."""
    text = (message.content or "").strip()
    typed = text == "/kb" or text.startswith(("/kb ", "/kb\n"))
    if (message.command or "") == "kb" or typed:
        return (text[3:] if typed else text).split()
    return None


async def _admin(what: str) -> str | None:
    """The signed-in user's name if they are an admin now (read from the database), else None after
    telling them so and logging the refusal."""
    user = _user()
    if await cl.make_async(is_admin)(user):
        return user
    log.warning("knowledge bases: %s refused for %r (not an admin)", what, user)
    await cl.Message(content=t(_lang(), "kb_admin_only")).send()
    return None


async def _manager(what: str, base: str) -> str | None:
    """The signed-in user's name if they may manage ``base`` now (an admin, or named in its manage list),
    else None after the same refusal as _admin (which does not tell whether the base exists)."""
    user = _user()
    if user and base in await cl.make_async(access.managed_bases)(core(), user):
        return user
    log.warning("knowledge bases: %s in %r refused for %r (may not manage it)", what, base[:80], user)
    await cl.Message(content=t(_lang(), "kb_admin_only")).send()
    return None


# ---------------------------------------------------------------- adding


async def add_file(base: str, path: Path, name: str, user: str, via: str = "kb add") -> bool:
    """Add one file to ``base`` with the upload's progress lines (audited); True if it is in the base now."""
    c = core()

    def work(progress):
        [out] = add_to_base(c.store, c.settings, base, [FileToAdd(path, name)], added_by=user,
                            lock=c.write_lock, progress=progress)
        return out

    _msg, out = await uploads.add_with_progress(_lang(), name, work, base=base)
    if out.error is None:
        log.info("knowledge base %s: %s %s by %s", base, name, out.status, user)
        passages = out.result.doc.passages if out.result else None
        await access.audit("kb.add", base, {"documents": [name], "count": 1, "status": out.status,
                                            "passages": passages, "via": via})
    return out.error is None


async def offer_upload(for_id: str, doc_hash: str) -> None:
    """Under an indexed upload: one "Add to knowledge base: NAME" button per base the user may manage."""
    lang = _lang()
    for base in await cl.make_async(access.managed_bases)(core(), _user()):
        await cl.Action(name="kb_add", id=f"kbadd-{base}-{doc_hash[:16]}", icon="library",
                        label=t(lang, "kb_add_to", base=base), payload={"base": base, "doc_hash": doc_hash},
                        tooltip=t(lang, "kb_add_tip")).send(for_id=for_id)


@cl.action_callback("kb_add")
async def on_kb_add(action: cl.Action):
    """Add one of this chat's uploads to a base (its managers and admins; the file is taken from this
    chat's thread, never from a path in the request)."""
    base = str(action.payload.get("base", ""))
    user = await _manager("adding a document", base)
    if user is None:
        return
    c = core()
    state = CHATS.get(cl.context.session.id)
    doc_hash = str(action.payload.get("doc_hash", ""))
    row = await cl.make_async(c.history.upload)(state.thread_id, doc_hash) if state else None
    if row is None or row["owner"] != user:
        await cl.Message(content=t(_lang(), "kb_upload_gone")).send()
        return
    original = uploads_root(c.settings.data_dir) / state.thread_id / f"{doc_hash}{Path(row['name']).suffix.lower()}"
    await add_file(base, original if original.is_file() else Path(row["path"]), row["name"], user, via="upload")


# ---------------------------------------------------------------- listing, removing, creating


async def show_bases(only: list[str] | None = None) -> None:
    """/kb: the bases (``only`` these: a manager's), each with its documents, passages and description."""
    c = core()
    lang = _lang()

    def load():
        return [(kb, len(coll.documents()), len(coll)) for kb in list_bases(c.settings)
                if only is None or kb.name in only for coll in [c.store.collection(kb.collection)]]

    rows = await cl.make_async(load)()
    lines = [t(lang, "kb_header", n=len(rows))]
    for kb, docs, passages in rows:
        text = read_description(kb.folder, lang)  # README.<lang>.md, else README.md
        desc = f" {md_escape(text)}" if text else ""
        lines.append(t(lang, "kb_line", base=kb.name, docs=docs, passages=passages) + desc)
    lines.append("\n" + t(lang, "kb_usage"))
    actions = [cl.Action(name="kb_docs", id=f"kbdocs-{kb.name}", icon="list", label=kb.name,
                         tooltip=t(lang, "kb_docs_tip", base=kb.name), payload={"base": kb.name}) for kb, _, _ in rows]
    await cl.Message(content="\n".join(lines), actions=actions).send()


async def show_documents(base: str) -> None:
    c = core()
    lang = _lang()

    def load():
        kb = get_base(c.settings, base)
        coll = c.store.collection(kb.collection)
        return kb, coll.documents(), len(coll)

    try:
        kb, docs, passages = await cl.make_async(load)()
    except KbchatError as err:
        await cl.Message(content=error_text(lang, err)).send()
        return
    if not docs:
        await cl.Message(content=t(lang, "kb_no_docs", base=base)).send()
        return
    lines = [t(lang, "kb_docs_header", base=base, n=len(docs), passages=passages), "",
             t(lang, "kb_table"), "|---|---|---|---|---|---|"]
    actions = []
    for i, d in enumerate(docs[:DOCS_SHOWN], 1):
        lines.append(f"| {i} | {md_escape(d.source)} | {d.pages} | {d.passages} | {md_escape(_added_by(lang, d))} | "
                     f"{when(d.added_at)} |")
        if d.origin != "knowledge":  # folder files are removed by deleting them from the folder
            actions.append(cl.Action(name="kb_remove", id=f"kbrm-{base}-{i}", icon="trash-2",
                                     label=t(lang, "kb_remove", i=i, name=safe_name(d.source)),
                                     payload={"base": base, "key": d.source_key}))
    if len(docs) > DOCS_SHOWN:
        lines.append("\n" + t(lang, "kb_more", n=len(docs) - DOCS_SHOWN, base=base))
    await cl.Message(content="\n".join(lines), actions=actions).send()


def _added_by(lang: str, doc) -> str:
    """Who added a document, in the UI language for the knowledge folder."""
    return t(lang, "kb_folder_origin") if not doc.added_by and doc.origin == ORIGIN_FOLDER else added_by_label(doc)


async def remove(base: str, which: str, user: str) -> bool:
    c = core()
    lang = _lang()
    try:
        doc = await cl.make_async(remove_document)(c.store, c.settings, base, which, lock=c.write_lock)
    except KbchatError as err:
        await cl.Message(content=t(lang, "kb_not_removed", reason=error_text(lang, err))).send()
        return False
    log.info("knowledge base %s: %s removed by %s", base, doc.source_key, user)
    await access.audit("kb.remove", base, {"document": doc.source, "key": doc.source_key,
                                           "passages": doc.passages})
    await cl.Message(content=t(lang, "kb_removed", name=md_escape(doc.source), base=base,
                               passages=doc.passages)).send()
    return True


@cl.action_callback("kb_docs")
async def on_kb_docs(action: cl.Action):
    base = str(action.payload.get("base", ""))
    if await _manager("listing documents", base) is not None:
        await show_documents(base)


@cl.action_callback("kb_remove")
async def on_kb_remove(action: cl.Action):
    base = str(action.payload.get("base", ""))
    user = await _manager("removing a document", base)
    if user is None:
        return
    if await remove(base, str(action.payload.get("key", "")), user):
        await action.remove()


async def on_command(args: list[str], elements: list) -> None:
    """/kb · /kb NAME · /kb create NAME description · /kb add NAME (files attached) · /kb remove NAME FILE.
    Creating a base is for admins; the rest also for a base's managers, on their bases."""
    lang = _lang()
    verb = args[0] if args else ""
    if not args:
        user = _user()
        mine = await cl.make_async(access.managed_bases)(core(), user) if user else []
        if await cl.make_async(is_admin)(user):
            await show_bases()
        elif mine:
            await show_bases(only=mine)
        else:
            await _admin("/kb")  # refused, as for anybody else
        return
    if verb == "create" and len(args) >= 2:
        user = await _admin("/kb create")
        if user is None:
            return
        try:
            kb = await cl.make_async(_create)(args[1], " ".join(args[2:]))
        except KbchatError as err:
            await cl.Message(content=error_text(lang, err)).send()
            return
        log.info("knowledge base %s created by %s", kb.name, user)
        await access.audit("kb.create", kb.name)
        await cl.Message(content=t(lang, "kb_created", base=kb.name, folder=kb.folder)).send()
    elif verb == "add" and len(args) == 2:
        user = await _manager("/kb add", args[1])
        if user is None:
            return
        if not elements:
            await cl.Message(content=t(lang, "kb_usage")).send()
            return
        for el in elements:
            name = safe_name(el.name)
            if not el.path:
                continue
            await add_file(args[1], Path(el.path), name, user)
    elif verb == "remove" and len(args) >= 3:
        user = await _manager("/kb remove", args[1])
        if user is not None:
            await remove(args[1], " ".join(args[2:]), user)
    elif len(args) == 1 and verb not in ("create", "add", "remove"):
        if await _manager("listing documents", verb) is not None:
            await show_documents(verb)
    else:
        await cl.Message(content=t(lang, "kb_usage")).send()


def _create(name: str, description: str):
    return create_base(core().settings, name, description)

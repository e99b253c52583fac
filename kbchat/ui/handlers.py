"""Chainlit's chat callbacks: start and resume, uploads, answers with Sources, Share this Q&A, and the
admin's read-only view of everybody's threads. Blocking work runs in threads (cl.make_async)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import chainlit as cl
from chainlit.chat_context import chat_contexts
from chainlit.config import config
from chainlit.input_widget import Slider, Switch
from chainlit.session import WebsocketSession

from kbchat import answer as ans
from kbchat.documents.reader import TEXT_TYPES
from kbchat.errors import KbchatError, LLMError
from kbchat.knowledge import base_of_collection, sync_knowledge
from kbchat.messages import error_text, t
from kbchat.records.history import thread_collection, uploads_root
from kbchat.ui import access, asking, bases, keys, review, runtime, uploads
from kbchat.ui.auth import MODE, is_admin
from kbchat.ui.render import render, safe_name
from kbchat.ui.routes import base_url, shared_url, upload_url
from kbchat.ui.runtime import CHATS, ChatState, Core, core, log
from kbchat.uploads import FileToAdd, Outcome, add_files

MAX_QUESTION_CHARS = 8000
RELEASE_POLL_SECONDS = 30.0  # how often a dropped chat checks whether Chainlit deleted its session
ADMIN_THREADS_SHOWN = 50


# ---------------------------------------------------------------- start-up


@cl.on_app_startup
async def startup() -> None:
    c = await cl.make_async(core)()
    # Index knowledge/ in the background: the app answers (from what is indexed) meanwhile.
    threading.Thread(target=_warm_then_sync, args=(c,), name="knowledge-sync", daemon=True).start()


def _warm_then_sync(c: Core) -> None:
    # Per-session collections of kbchat before chat history ("chat-<session id>") were temporary; a
    # crash could leave them behind. Threads' uploads live in "thread-<thread id>" collections now.
    for name in c.store.names():
        if name.startswith("chat-"):
            with c.write_lock:
                c.store.drop(name)
            log.info("dropped the leftover temporary collection %s", name)
    try:  # build (or load) the ONNX query encoder now, not on the first user's question
        c.embedder.encode_query("warm-up")
    except Exception:
        log.exception("query embedder warm-up failed")
    c.sync_status = "running"
    try:
        report = sync_knowledge(c.store, c.settings, lock=c.write_lock)
        c.sync_status = str(report)
    except Exception as err:
        log.exception("knowledge sync failed")
        c.sync_status = f"failed: {err}"
    log.info("knowledge sync: %s", c.sync_status)


# ---------------------------------------------------------------- personas, settings


def _lang() -> str:
    try:
        return cl.context.session.language or "en"
    except Exception:  # no session (profile list requested over HTTP)
        return "en"


def _user_name() -> str | None:
    try:
        u = cl.context.session.user
    except Exception:
        return None
    return getattr(u, "identifier", None)


def _session_config(self: WebsocketSession):
    """Every session's Chainlit config: the global one (kbchat's chat profiles carry no
    ``config_overrides``).

    Chainlit's own ``WebsocketSession.get_config`` runs ``set_chat_profiles`` with
    ``run_until_complete`` inside the running loop (nest_asyncio), which runs every other ready
    connection's handler nested inside this one: 50-100 sockets connecting at once (a replica
    restarting under open tabs) nested that deep enough to raise RecursionError in the socket's
    connect, and those sessions never got a chat."""
    return config


WebsocketSession.get_config = _session_config


@cl.set_chat_profiles
async def chat_profiles(current_user=None, language: str | None = None):
    """The persona menu: only the personas this user may see (limited by ``visible_to``; admins: all)."""
    lang = language or "en"
    c = core()
    seen = await asyncio.to_thread(access.visible_personas, c, getattr(current_user, "identifier", None))
    return [
        cl.ChatProfile(
            name=p.id,
            display_name=p.display_name(lang),
            markdown_description=p.describe(lang),
            icon=p.icon,
            default=p.default,
            starters=[cl.Starter(label=s.label, message=s.message) for s in p.starters_for(lang)],
        )
        for p in seen
    ]


def _persona(state: ChatState):
    c = core()
    if state.preview is not None:
        return state.preview
    return c.personas.get(state.persona_id) or next(iter(c.personas.values()))


def _chat_settings() -> dict:
    return cl.user_session.get("chat_settings") or {}


async def _send_settings(state: ChatState, restored: dict | None = None) -> None:
    c = core()
    p = _persona(state)
    restored = restored or {}
    lang = _lang()
    widgets = [
        Switch(id="reasoning", label=t(lang, "set_reasoning"),
               initial=bool(restored.get("reasoning", p.reasoning_default))),
        Slider(id="k", label=t(lang, "set_k"), initial=int(restored.get("k") or p.retrieval.k), min=1, max=15, step=1),
    ]
    if c.reranker is not None:
        widgets.append(Switch(id="rerank", label=t(lang, "set_rerank"), initial=bool(restored.get("rerank", True))))
    await cl.ChatSettings(widgets).send()


async def _send_commands() -> None:
    lang = _lang()
    if await cl.make_async(is_admin)(_user_name()):
        await cl.context.emitter.set_commands([
            {"id": "threads", "icon": "history", "description": t(lang, "cmd_threads"),
             "button": False, "persistent": False},
            {"id": "review", "icon": "list-checks", "description": t(lang, "cmd_review"),
             "button": False, "persistent": False},
            bases.command(lang),
            keys.command(lang),
        ])
    elif await cl.make_async(access.managed_bases)(core(), _user_name()):  # a base's managers: /kb
        await cl.context.emitter.set_commands([bases.command(lang), keys.command(lang)])
    elif _user_name():  # everybody signed in: their own API keys
        await cl.context.emitter.set_commands([keys.command(lang)])


async def _allowed_persona(wanted: str | None) -> str | None:
    """The persona this chat may run with (never one hidden from its user: the default they see instead,
    with one line saying so); Chainlit's session and the thread's metadata keep the one chosen."""
    c = core()
    persona_id, refused = await cl.make_async(access.choose_persona)(c, _user_name(), wanted)
    if persona_id != wanted:
        cl.context.session.chat_profile = persona_id
    if refused:
        chosen = c.personas.get(persona_id) if persona_id else None  # one look: personas may change meanwhile
        fallback = chosen.display_name(_lang()) if chosen else "-"
        await cl.Message(content=t(_lang(), "persona_hidden", persona=fallback)).send()
    return persona_id


def _new_state(persona_id: str) -> ChatState:
    thread_id = cl.context.session.thread_id
    return ChatState(persona_id=persona_id, thread_id=thread_id, collection=thread_collection(thread_id),
                     user=_user_name())


async def _preview():
    """The persona an admin opened from the console's preview link (once; a draft too), with one line
    saying so; None for every other chat."""
    from kbchat.ui.admin.personas import take_preview

    cookie = (getattr(cl.context.session, "environ", None) or {}).get("HTTP_COOKIE")
    pid = take_preview(cookie, _user_name()) if cookie else None
    if not pid or not await cl.make_async(is_admin)(_user_name()):
        return None
    rec = await cl.make_async(core().persona_cache.records.get)(pid)
    if rec is None or rec.persona is None:
        return None
    lang = _lang()
    status = t(lang, "pdb_draft" if rec.status == "draft" else "pdb_published")
    await cl.Message(content=t(lang, "pdb_preview_line", persona=rec.persona.display_name(lang), status=status)).send()
    return rec.persona


@cl.on_chat_start
async def on_chat_start() -> None:
    preview = await _preview()
    persona_id = preview.id if preview else await _allowed_persona(cl.user_session.get("chat_profile"))
    state = _new_state(persona_id or "")
    state.preview = preview
    CHATS[cl.context.session.id] = state
    cl.user_session.set("kbchat_persona", persona_id)
    await _send_settings(state)
    await _send_commands()


@cl.on_chat_resume
async def on_chat_resume(thread: dict) -> None:
    """Reopened from the sidebar: persona, settings, follow-up history, uploads and Share state return
    (the messages and Source elements come back from the database through Chainlit)."""
    c = core()
    meta = thread.get("metadata") or {}
    persona_id = cl.user_session.get("kbchat_persona") or meta.get("chat_profile") or next(iter(c.personas))
    persona_id = await _allowed_persona(persona_id if persona_id in c.personas else None)
    cl.user_session.set("kbchat_persona", persona_id)
    state = _new_state(persona_id or "")
    CHATS[cl.context.session.id] = state

    def load():
        return c.history.uploads(state.thread_id), c.history.answers(state.thread_id)

    ups, records = await cl.make_async(load)()
    state.uploads = {u["doc_hash"]: u["name"] for u in ups}
    for answer_id, rec in records:
        if rec.get("search_only"):
            continue
        state.answers[answer_id] = rec
        state.history += [("user", rec.get("question", "")), ("assistant", rec.get("answer", ""))]
    await _send_settings(state, meta.get("chat_settings") or _chat_settings())
    await _send_commands()
    shared = await cl.make_async(c.share_store.shared_keys)(list(state.answers))
    lang = _lang()
    for answer_id in state.answers:
        acts = _shared_actions(answer_id, lang) if answer_id in shared else _share_actions(answer_id, lang)
        for a in acts:
            await a.send(for_id=answer_id)


@cl.on_settings_update
async def on_settings_update(settings: dict) -> None:
    log.info("settings updated: %s", settings)


# ---------------------------------------------------------------- session clean-up


async def _release_when_gone(session_id: str, socket_id: str | None) -> None:
    """Forget a chat's in-memory state once Chainlit has really deleted the session (not on a transient
    drop). Its uploads stay: they belong to the thread, deleted only with it."""
    while True:
        await asyncio.sleep(min(RELEASE_POLL_SECONDS, config.project.session_timeout / 2))
        s = WebsocketSession.get_by_id(session_id)
        if s is None:
            state = CHATS.pop(session_id, None)
            chat_contexts.pop(session_id, None)  # Chainlit never frees this (issue #2951)
            if state and state.has_uploads and not any(o.thread_id == state.thread_id for o in CHATS.values()):
                await cl.make_async(core().store.release)(state.collection)
            return
        if s.socket_id != socket_id:  # reconnected: the next on_chat_end starts a new watcher
            return


@cl.on_chat_end
async def on_chat_end() -> None:
    s = cl.context.session
    asyncio.create_task(_release_when_gone(s.id, getattr(s, "socket_id", None)))


# ---------------------------------------------------------------- uploads


def _max_files() -> int:
    f = config.features.spontaneous_file_upload
    return int(getattr(f, "max_files", 0) or 20) if f else 20


def _add_upload(c: Core, state: ChatState, path: str, name: str, progress) -> Outcome:
    """Index an upload into the thread's collection, its copy kept in the thread's folder (Chainlit deletes
    its own with the session; an Office file's converted PDF is kept beside it, so citations open it and
    deleting the thread removes it), and record it as the thread owner's."""
    folder = uploads_root(c.settings.data_dir, c.settings.uploads_dir) / state.thread_id
    [out] = add_files(c.store, state.collection, [FileToAdd(Path(path), name)], settings=c.settings,
                      origin="upload", keep_dir=folder, lock=c.write_lock, progress=progress)
    if out.error is None:
        c.history.add_upload(state.thread_id, out.doc.doc_hash, name=name, path=str(out.doc.path),
                             owner=state.user)
    return out


async def _ingest_uploads(elements) -> None:
    c = core()
    lang = _lang()
    state = CHATS[cl.context.session.id]
    for el in elements:
        name = safe_name(el.name)
        if not el.path:
            await cl.Message(content=t(lang, "not_indexed", name=name, reason=t(lang, "only_supported"))).send()
            continue
        msg, out = await uploads.add_with_progress(
            lang, name, lambda progress, path=el.path, name=name: _add_upload(c, state, path, name, progress))
        if out.error is None:
            state.uploads[out.doc.doc_hash] = name
            await bases.offer_upload(msg.id, out.doc.doc_hash)  # admins: "Add to knowledge base …"


# ---------------------------------------------------------------- answers


def _source_element(state: ChatState, n: int, hit, lang: str = "en"):
    """A Source pill: the PDF at the cited page with the passage highlighted, from kbchat's own
    owner-checked routes (a URL element, so it is stored with the thread and opens again after a
    resume). A Markdown or text source has no PDF: the pill shows the passage itself."""
    name = t(lang, "source", n=n)
    doc_hash = hit.passage.doc_hash
    base = base_of_collection(hit.collection, core().settings)
    if doc_hash in state.uploads and hit.collection == state.collection:
        url = upload_url(state.thread_id, doc_hash, hit.passage.id)
    elif base and base != "default":
        url = base_url(base, doc_hash, hit.passage.id)
    else:
        url = shared_url(doc_hash, hit.passage.id)
    if Path(hit.path or "").suffix.lower() in TEXT_TYPES:
        return cl.Text(name=name, display="side", url=url)  # the route answers with the passage text
    return cl.Pdf(name=name, display="side", page=hit.page, url=url)


async def _resumed_state(sid: str, wait_s: float = 10.0) -> ChatState | None:
    """The state on_chat_resume is setting up for this session (Chainlit runs it beside the first
    message of a reopened chat), or None if it does not come within ``wait_s``."""
    for _ in range(int(wait_s / 0.1)):
        await asyncio.sleep(0.1)
        if sid in CHATS:
            return CHATS[sid]
    return None


@cl.on_message
async def on_message(message: cl.Message) -> None:
    c = core()
    sid = cl.context.session.id
    state = CHATS.get(sid)
    if state is None and getattr(cl.context.session, "thread_id_to_resume", None):
        state = await _resumed_state(sid)  # a question typed while the reopened chat is still resuming
    if state is None:  # e.g. the server restarted under an open tab
        await on_chat_start()
        state = CHATS[sid]
    if (message.command or "") == "threads" or (message.content or "").strip() == "/threads":
        await _admin_threads()
        return
    if (message.command or "") == "review" or (message.content or "").strip() == "/review":
        await review.start()
        return
    if await review.take_message(message):  # an admin's corrected answer after "Edit answer"
        return
    key_args = keys.parse(message)
    if key_args is not None:  # /keys: the user's own API keys (admins: anyone's)
        await keys.on_command(key_args)
        return
    kb_args = bases.parse(message)
    if kb_args is not None:  # /kb: knowledge bases (admins); attached files go to a base, not the chat
        await bases.on_command(kb_args, list(message.elements or [])[: _max_files()])
        return
    elements = list(message.elements or [])
    if len(elements) > _max_files():  # Chainlit enforces max_files only in the browser
        n = _max_files()
        await cl.Message(content=t(_lang(), "too_many", max=n, ignored=len(elements) - n)).send()
        elements = elements[:n]
    if elements:
        await _ingest_uploads(elements)
    question = (message.content or "").strip()
    if not question:
        if not elements:
            await cl.Message(content=t(_lang(), "empty")).send()
        return
    if len(question) > MAX_QUESTION_CHARS:
        await cl.Message(content=t(_lang(), "truncated", n=len(question), max=MAX_QUESTION_CHARS)).send()
        question = question[:MAX_QUESTION_CHARS]
    await answer_question(c, state, question)


async def _may_ask(c: Core, state: ChatState, lang: str) -> bool:
    """A persona the chat may use, and today's question quota (one line when over it: no search, no LLM)."""
    if state.preview is None and state.persona_id not in c.personas:  # no persona is visible to this user
        await cl.Message(content=t(lang, "persona_none")).send()
        return False
    quota = await cl.make_async(access.take_question)(c, state.user)
    if quota is not None and not quota.allowed:
        log.info("quota: %s is over %s questions today", state.user, quota.limit)
        await cl.Message(content=access.quota_line(lang, quota)).send()
        return False
    return True


STREAM_EVERY = 0.05  # seconds between streamed updates of one message


class _Coalesce:
    """Streams a message's tokens in pieces of STREAM_EVERY seconds: the first token at once, then what came
    meanwhile in one socket.io event. One event per LLM token made 100 chats streaming at once thousands
    of emits a second on the one event loop (bench/load.py: /health waited 2.4 s at p95)."""

    def __init__(self):
        self.target, self.parts, self.last = None, [], 0.0

    async def put(self, target, token: str) -> None:
        self.target = target
        self.parts.append(token)
        if time.monotonic() - self.last >= STREAM_EVERY:
            await self.flush()

    async def flush(self) -> None:
        if self.target is not None and self.parts:
            piece, self.parts = "".join(self.parts), []
            self.last = time.monotonic()
            await self.target.stream_token(piece)


async def answer_question(c: Core, state: ChatState, question: str) -> None:
    lang = _lang()
    if not await _may_ask(c, state, lang):
        return
    p = _persona(state)
    cs = _chat_settings()
    k = int(cs.get("k") or p.retrieval.k)
    reasoning = bool(cs.get("reasoning", p.reasoning_default))
    # the chat's own uploads + the persona's knowledge bases this user may read, asked of the database at
    # each question (an access change applies at once, on every replica); the rest are never searched, so
    # the top k comes only from what they may read
    reranker = c.reranker if cs.get("rerank", True) else None
    uploads_coll = state.collection if state.has_uploads else None

    def do_search():
        return asking.retrieve(c, state.user, p, question, history=state.history, k=k, reranker=reranker,
                               uploads=uploads_coll)

    try:
        found = await cl.make_async(do_search)()
    except KbchatError as err:
        await cl.Message(content=t(lang, "search_failed", error=error_text(lang, err))).send()
        return
    hits, base_colls = found.hits, found.base_colls
    if found.withheld and not state.withheld_told:
        state.withheld_told = True
        bases_ = p.knowledge if p.retrieval.use_shared_knowledge else []
        await cl.Message(content=access.withheld_line(lang, found.withheld, len(bases_))).send()

    messages = asking.prompt(p, question, hits, state.history, reasoning=reasoning,
                             style=c.settings.reasoning_style)
    answer_msg = None  # created at the first answer token, so the Thinking step sits above it
    think: cl.Step | None = None
    started, first_token = time.monotonic(), None
    text, thoughts, error = [], [], None
    think_out, answer_out = _Coalesce(), _Coalesce()
    try:
        llm = ans.make_llm(c.settings, temperature=p.temperature, persona=p)
        async for chunk in ans.astream(llm, messages):
            if chunk.kind == "reasoning":
                if not reasoning:
                    thoughts.append(chunk.text)
                    continue
                if think is None:
                    think = cl.Step(name=t(lang, "thinking"), type="llm", show_input=False, default_open=False)
                    think.start = datetime.now(timezone.utc).isoformat()
                    await think.send()
                thoughts.append(chunk.text)
                await think_out.put(think, chunk.text)
            else:
                text.append(chunk.text)
                if first_token is None:
                    first_token = time.monotonic()
                if answer_msg is None:
                    answer_msg = cl.Message(content="")
                await answer_out.put(answer_msg, chunk.text)
        await think_out.flush()
        await answer_out.flush()
    except LLMError as err:
        error = err
    except Exception as err:  # never a stack trace in the chat
        log.exception("LLM call failed")
        kind = type(err).__name__
        error = LLMError(t("en", "llm_crashed", kind=kind), key="llm_crashed", params={"kind": kind})
    if think is not None:
        think.end = datetime.now(timezone.utc).isoformat()
        await think.update()

    answer_text = "".join(text)
    if answer_msg is None:
        answer_msg = cl.Message(content="")
    # below the relevance floor (search.retrieve.is_covered): said first, the passages listed as the closest
    uncovered = asking.not_covered(hits)
    said = t(lang, "ret_not_covered") + "\n\n" if hits and uncovered else ""
    if error is not None:
        shown = error_text(lang, error)
        prefix = t(lang, "llm_failed", error=shown)
        if answer_text:
            prefix = f"{answer_text}\n\n" + t(lang, "llm_cut", error=shown)
        citations = []
        body, order = render(said + prefix if hits else f"⚠️ {shown}", hits, citations, lang,
                             closest=uncovered)
    else:
        citations = [] if uncovered else ans.cite(answer_text, hits)
        if not hits:
            answer_text += "\n\n" + t(lang, "no_hits")
        if c.sync_status == "running" and base_colls:
            answer_text += "\n\n" + t(lang, "syncing")
        body, order = render(said + answer_text, hits, citations, lang, closest=uncovered)
    answer_msg.content = body
    answer_msg.elements = [_source_element(state, i, hits[old - 1], lang) for i, old in enumerate(order, 1)]
    # every answer leaves a record (usage figures, the admin console, exports); search-only ones (the LLM
    # failed) are flagged and are never shared nor fed back as conversation history
    record = {"question": question, "answer": answer_text, "reasoning": "".join(thoughts),
              "persona_id": p.id, "sources": asking.sources(hits, citations), "model": c.settings.llm_model,
              "settings": dict(cs, k=k, reasoning=reasoning),
              **asking.usage_fields(state.user, lang, base_colls, hits, started, first_token, error)}
    if error is None:
        answer_msg.actions = _share_actions(answer_msg.id, lang)
        state.answers[answer_msg.id] = record
        state.history += [("user", question), ("assistant", answer_text)]
    try:  # kept for follow-ups and Share after a resume; a failure is logged, the answer still shows
        await cl.make_async(c.history.save_answer)(answer_msg.id, state.thread_id, record)
    except Exception:
        log.exception("history: saving answer %s failed", answer_msg.id)
    await answer_msg.send()
    if answer_msg.elements:
        # Chainlit opens the side panel by itself with every Source of the chat stacked under the last
        # one's title; a reader expects nothing open until they click a Source pill (which then shows
        # only that Source, at its page). An empty element list closes the panel.
        await cl.ElementSidebar.set_elements([])



# ---------------------------------------------------------------- admin view


async def _admin_threads() -> None:
    """/threads (admins): everybody's recent threads, each a link to Chainlit's read-only view."""
    c = core()
    lang = _lang()
    if not await cl.make_async(is_admin)(_user_name()):
        await cl.Message(content=t(lang, "admin_only")).send()
        return
    rows, _ = await cl.make_async(c.history.list_threads)(user_identifier=None, everyone=True,
                                                          first=ADMIN_THREADS_SHOWN)
    if not rows:
        await cl.Message(content=t(lang, "no_threads")).send()
        return
    lines = [t(lang, "threads_header", n=len(rows))]
    for r in rows:
        title = " ".join((r["name"] or t(lang, "untitled")).split())[:80].replace("[", "(").replace("]", ")")
        lines.append(f"- {r['createdAt'][:16].replace('T', ' ')} · **{r['userIdentifier']}** · "
                     f"[{title}](/share/{r['id']})")
    await cl.Message(content="\n".join(lines)).send()


@cl.on_shared_thread_view
async def on_shared_thread_view(thread: dict, viewer) -> bool:
    """Chainlit's read-only thread page (/share/<id>) opens for admins (support) and the owner only;
    kbchat never marks a thread public (see kbchat.records.history)."""
    name = getattr(viewer, "identifier", None)
    if not name:
        return False
    return name == thread.get("userIdentifier") or await cl.make_async(is_admin)(name)


# ---------------------------------------------------------------- sharing


def _share_actions(answer_id: str, lang: str = "en") -> list:
    return [cl.Action(name="share_qa", id=f"share-{answer_id}", icon="share-2", label=t(lang, "share"),
                      tooltip=t(lang, "share_tip"), payload={"answer_id": answer_id})]


def _shared_actions(answer_id: str, lang: str = "en") -> list:
    return [cl.Action(name="shared_noop", id=f"shared-{answer_id}", icon="check", label=t(lang, "shared"),
                      tooltip=t(lang, "shared_tip"), payload={"answer_id": answer_id}),
            cl.Action(name="unshare_qa", id=f"undo-{answer_id}", icon="undo-2", label=t(lang, "undo"),
                      tooltip=t(lang, "undo_tip"), payload={"answer_id": answer_id})]


async def _swap_actions(action: cl.Action, new: list) -> None:
    await action.remove()
    for other in ("share", "shared", "undo"):
        if other != action.id.split("-")[0]:
            await cl.Action(name="x", id=f"{other}-{action.payload['answer_id']}", payload={}).remove()
    for a in new:
        await a.send(for_id=action.payload["answer_id"])


def _own_answer(answer_id: str) -> dict | None:
    """The record of an answer of this chat's thread (never another user's)."""
    state = CHATS.get(cl.context.session.id)
    if state is None:
        return None
    if answer_id in state.answers:
        return state.answers[answer_id]
    found = core().history.answer(answer_id)
    if found and found[0] == state.thread_id and not found[1].get("search_only"):
        return found[1]
    return None


@cl.action_callback("share_qa")
async def on_share(action: cl.Action):
    answer_id = str(action.payload.get("answer_id", ""))
    rec = await cl.make_async(_own_answer)(answer_id)
    if rec is None:
        await cl.Message(content=t(_lang(), "share_gone")).send()
        return
    store = core().share_store
    first_time = not cl.user_session.get("share_note_shown")
    await cl.make_async(store.share)(asking.share_record(core(), answer_id, rec, _user_name()))  # idempotent on the answer id
    await _swap_actions(action, _shared_actions(answer_id, _lang()))
    if first_time:
        cl.user_session.set("share_note_shown", True)
        await cl.Message(content=t(_lang(), "share_note")).send()


@cl.action_callback("unshare_qa")
async def on_unshare(action: cl.Action):
    answer_id = str(action.payload.get("answer_id", ""))
    if await cl.make_async(_own_answer)(answer_id) is None:
        return
    await cl.make_async(core().share_store.delete_by_key)(answer_id)
    await _swap_actions(action, _share_actions(answer_id, _lang()))


@cl.action_callback("shared_noop")
async def on_shared_noop(action: cl.Action):
    return None


__all__ = ["MODE", "answer_question", "on_chat_end", "on_chat_resume", "on_chat_start", "on_message", "runtime"]

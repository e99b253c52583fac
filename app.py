"""kbchat's Chainlit app: the only module that imports chainlit. It stays thin and calls kbchat/."""

# No `from __future__ import annotations`: chainlit loads this file without registering it in
# sys.modules, and dataclasses then cannot resolve string annotations.


import asyncio
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import chainlit as cl
from chainlit.chat_context import chat_contexts
from chainlit.config import config
from chainlit.input_widget import Slider, Switch
from chainlit.session import WebsocketSession
from fastapi import Depends, HTTPException
from fastapi.responses import FileResponse

from kbchat import answer as ans
from kbchat.errors import KbchatError, LLMError
from kbchat.ingest import read_ahead, read_pdf
from kbchat.messages import page_ref, t
from kbchat.personas import load_personas
from kbchat.retrieve import Reranker, search
from kbchat.settings import Settings, offline_model_env
from kbchat.store import Store, add_many, load_embedder

log = logging.getLogger("kbchat")
if not log.handlers:  # chainlit configures only its own logger; ours reports start-up sync and errors
    _h = logging.StreamHandler()
    _h.setFormatter(logging.Formatter("%(asctime)s kbchat %(levelname)s %(message)s"))
    log.addHandler(_h)
    log.setLevel(logging.INFO)
    log.propagate = False

MAX_QUESTION_CHARS = 8000
HISTORY_TURNS = 6
MAX_PAGES = 2000
RELEASE_POLL_SECONDS = 30.0  # how often a dropped chat checks whether Chainlit deleted its session


@dataclass
class Core:
    """Process-wide objects, built once at start-up and shared by every chat."""

    settings: Settings
    personas: dict
    store: Store
    embedder: object
    reranker: Reranker | None
    share_store: object = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    sync_status: str = "not started"


@dataclass
class ChatState:
    """Per-session state, kept outside cl.user_session so nothing large is persisted."""

    persona_id: str
    collection: str
    uploads: dict = field(default_factory=dict)     # doc_hash -> (path, chainlit_key, name)
    history: list = field(default_factory=list)     # (role, text), no reasoning
    answers: dict = field(default_factory=dict)     # answer message id -> record for sharing
    has_uploads: bool = False


CORE: Core | None = None
CHATS: dict[str, ChatState] = {}


def core() -> Core:
    global CORE
    if CORE is None:
        offline_model_env()
        settings = Settings()
        personas = load_personas(settings.personas_dir)  # ConfigError names the file and field
        embedder = load_embedder(settings)
        store = Store(settings.data_dir, embedder)
        store.collection(settings.shared_collection)
        reranker = Reranker(settings.reranker_model) if settings.reranker_model else None
        CORE = Core(settings, personas, store, embedder, reranker)
    return CORE


# ---------------------------------------------------------------- shared knowledge base


def sync_knowledge(c: Core) -> str:
    """Index new/changed PDFs of knowledge/ and drop removed ones; other shared docs stay."""
    folder = c.settings.knowledge_dir
    coll = c.store.collection(c.settings.shared_collection)
    known = {d.source_key: d for d in coll.documents() if d.origin == "knowledge"}
    c.sync_status = "running"
    seen, added, failed = set(), 0, 0
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf") \
        if folder.is_dir() else []

    def read(path: Path):
        return read_pdf(path, chunk_size=c.settings.chunk_size, chunk_overlap=c.settings.chunk_overlap,
                        max_pages=MAX_PAGES)

    def items():
        for path, doc in read_ahead(files, read):  # the next file is parsed while this one embeds
            key = "knowledge/" + path.relative_to(folder).as_posix()
            seen.add(key)
            if isinstance(doc, Exception) or not (key in known and known[key].doc_hash == doc.doc_hash):
                yield key, doc

    # Passages of several files are embedded together, outside the write lock (add_many).
    for key, doc, result in add_many(coll, items(), origin="knowledge", lock=c.write_lock):
        if isinstance(result, KbchatError):
            failed += 1
            log.warning("knowledge: %s", result)
        elif isinstance(result, Exception):
            raise result
        else:
            added += result.status in ("added", "replaced")
            log.info("knowledge: %s %s", key, result.status)
    removed = 0
    for key in set(known) - seen:
        with c.write_lock:
            removed += coll.remove(key)
    c.sync_status = f"{len(files)} PDFs in {folder}: {added} indexed, {removed} removed, {failed} failed"
    log.info("knowledge sync: %s", c.sync_status)
    return c.sync_status


@cl.on_app_startup
async def startup() -> None:
    c = await cl.make_async(core)()
    # Index knowledge/ in the background: the app answers (from what is indexed) meanwhile.
    threading.Thread(target=_warm_then_sync, args=(c,), name="knowledge-sync", daemon=True).start()


def _warm_then_sync(c: Core) -> None:
    try:  # build (or load) the ONNX query encoder now, not on the first user's question
        c.embedder.encode_query("warm-up")
    except Exception:
        log.exception("query embedder warm-up failed")
    sync_knowledge(c)


def _install_pdf_route() -> None:
    """GET /kbchat/pdf/<doc_hash>: a shared-base PDF, streamed from disk (no copy per citation)."""
    from chainlit.auth import get_current_user
    from chainlit.server import app as cl_app

    async def shared_pdf(doc_hash: str, current_user=Depends(get_current_user)):
        # get_current_user returns None without auth and raises 401 when auth is on and no login.
        if not re.fullmatch(r"[0-9a-f]{16,64}", doc_hash):
            raise HTTPException(status_code=404, detail="not found")
        c = core()
        path = c.store.collection(c.settings.shared_collection).path_of(doc_hash)
        if not path or not Path(path).is_file():
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(path, media_type="application/pdf")

    cl_app.add_api_route("/kbchat/pdf/{doc_hash}", shared_pdf, methods=["GET"])
    cl_app.router.routes.insert(0, cl_app.router.routes.pop())  # before the SPA catch-all


_install_pdf_route()


class UploadLimit:
    """ASGI guard for POST /project/file: refuse a too-large upload from its Content-Length, before
    Chainlit reads the whole body into memory (it checks max_size_mb only after reading)."""

    OVERHEAD = 64 * 1024  # multipart headers around the file

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/project/file"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        limit = self.max_bytes + self.OVERHEAD
        if length is not None and int(length) > limit:
            return await self._refuse(send)
        seen, over = 0, False

        async def counted():
            nonlocal seen, over
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > limit:  # no or false Content-Length (chunked): stop reading
                over = True
                return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            if not over:
                return await send(msg)
            if msg["type"] == "http.response.start":  # whatever Chainlit answers (400): say why instead
                await self._refuse(send)

        return await self.app(scope, counted, guarded_send)

    async def _refuse(self, send):
        mb = self.max_bytes // (1024 * 1024)
        body = ('{"detail": "File too large: the limit is %d MB per file."}' % mb).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _install_upload_limit() -> None:
    from chainlit.server import app as cl_app

    mb = config.features.spontaneous_file_upload.max_size_mb if config.features.spontaneous_file_upload else 50
    cl_app.add_middleware(UploadLimit, max_bytes=int(mb or 50) * 1024 * 1024)


_install_upload_limit()


class FileOwner:
    """Bind a chat's files to the browser that opened it. Chainlit serves /project/file/<id>?session_id=S
    to anyone who knows S (without auth). This sets a random HttpOnly cookie on the first response and
    refuses (404) file requests for session S whose cookie differs from the one S's socket connected with.
    Clients that never had the cookie (API/socket.io scripts) are not bound."""

    COOKIE = "kbchat_client"

    def __init__(self, app):
        self.app = app

    @staticmethod
    def _cookie(header: str | None) -> str | None:
        from http.cookies import SimpleCookie

        if not header:
            return None
        try:
            jar = SimpleCookie()
            jar.load(header)
        except Exception:
            return None
        m = jar.get(FileOwner.COOKIE)
        return m.value if m else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        mine = self._cookie(headers.get(b"cookie", b"").decode("latin-1"))
        if "/project/file" in scope["path"]:
            from urllib.parse import parse_qs

            sid = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id") or [None])[0]
            s = WebsocketSession.get_by_id(sid) if sid else None
            owner = self._cookie((getattr(s, "environ", None) or {}).get("HTTP_COOKIE")) if s else None
            if owner and owner != mine:
                body = b'{"detail": "File not found"}'
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                return await send({"type": "http.response.body", "body": body})
        if mine:
            return await self.app(scope, receive, send)
        import secrets

        token = secrets.token_urlsafe(24)

        async def with_cookie(msg):
            if msg["type"] == "http.response.start":
                msg = dict(msg, headers=[*msg.get("headers", []), (
                    b"set-cookie", f"{self.COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode())])
            await send(msg)

        return await self.app(scope, receive, with_cookie)


def _install_file_owner() -> None:
    from chainlit.server import app as cl_app

    cl_app.add_middleware(FileOwner)


_install_file_owner()


# ---------------------------------------------------------------- personas, settings


def _lang() -> str:
    try:
        return cl.context.session.language or "en"
    except Exception:  # no session (profile list requested over HTTP)
        return "en"


@cl.set_chat_profiles
async def chat_profiles(current_user=None, language: str | None = None):
    lang = language or "en"
    return [
        cl.ChatProfile(
            name=p.id,
            display_name=p.display_name(lang),
            markdown_description=p.describe(lang),
            icon=p.icon,
            default=p.default,
            starters=[cl.Starter(label=s.label, message=s.message) for s in p.starters_for(lang)],
        )
        for p in core().personas.values()
    ]


def _persona(state: ChatState):
    c = core()
    return c.personas.get(state.persona_id) or next(iter(c.personas.values()))


def _chat_settings() -> dict:
    return cl.user_session.get("chat_settings") or {}


@cl.on_chat_start
async def on_chat_start() -> None:
    c = core()
    sid = cl.context.session.id
    persona_id = cl.user_session.get("chat_profile") or next(iter(c.personas))
    state = ChatState(persona_id=persona_id, collection=f"chat-{sid}")
    CHATS[sid] = state
    p = _persona(state)
    widgets = [
        Switch(id="reasoning", label="Reasoning (for reasoning models)", initial=p.reasoning_default),
        Slider(id="k", label="Passages to use", initial=p.retrieval.k, min=1, max=15, step=1),
    ]
    if c.reranker is not None:
        widgets.append(Switch(id="rerank", label="Cross-encoder rerank", initial=True))
    await cl.ChatSettings(widgets).send()


@cl.on_settings_update
async def on_settings_update(settings: dict) -> None:
    log.info("settings updated: %s", settings)


# ---------------------------------------------------------------- session clean-up


async def _release_when_gone(session_id: str, socket_id: str | None) -> None:
    """Free a chat's collection once Chainlit has really deleted the session (not on a transient drop)."""
    while True:
        await asyncio.sleep(min(RELEASE_POLL_SECONDS, config.project.session_timeout / 2))
        s = WebsocketSession.get_by_id(session_id)
        if s is None:
            state = CHATS.pop(session_id, None)
            chat_contexts.pop(session_id, None)  # Chainlit never frees this (issue #2951)
            if state and state.has_uploads:
                c = core()
                with c.write_lock:
                    await cl.make_async(c.store.drop)(state.collection)
            return
        if s.socket_id != socket_id:  # reconnected: the next on_chat_end starts a new watcher
            return


@cl.on_chat_end
async def on_chat_end() -> None:
    s = cl.context.session
    asyncio.create_task(_release_when_gone(s.id, getattr(s, "socket_id", None)))


# ---------------------------------------------------------------- uploads


_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_NAME_SAFE = str.maketrans({"[": "(", "]": ")", "<": "‹", ">": "›", "`": "'"})


def _safe_name(raw) -> str:
    """Display/catalog name of an upload: its last path component, no control or link characters,
    at most 120 characters. Never used as a path (the file lives at Chainlit's el.path)."""
    name = _CTRL.sub("", re.split(r"[\\/]", raw or "")[-1]).strip() or "file"
    if len(name) > 120:
        name = name[:100] + "…" + name[-15:]
    return name.translate(_NAME_SAFE)


def _max_files() -> int:
    f = config.features.spontaneous_file_upload
    return int(getattr(f, "max_files", 0) or 20) if f else 20


def _is_pdf_element(el) -> bool:
    name = (el.name or "").lower()
    return (el.mime or "") == "application/pdf" or name.endswith(".pdf")


def _ingest_file(c: Core, state: ChatState, path: str, name: str, progress: dict):
    def on_page(done: int, total: int) -> None:
        progress.update(stage="reading", done=done, total=total)

    def on_embed(done: int, total: int) -> None:
        progress.update(stage="embedding", done=done, total=total)

    doc = read_pdf(path, source=name, chunk_size=c.settings.chunk_size,
                   chunk_overlap=c.settings.chunk_overlap, on_page=on_page, max_pages=MAX_PAGES)
    coll = c.store.collection(state.collection)
    with c.write_lock:
        return doc, coll.add(doc, source_key=name, origin="upload", on_progress=on_embed)


async def _ingest_uploads(elements) -> None:
    c = core()
    lang = _lang()
    state = CHATS[cl.context.session.id]
    for el in elements:
        name = _safe_name(el.name)
        if not _is_pdf_element(el) or not el.path:
            await cl.Message(content=t(lang, "not_indexed", name=name, reason=t(lang, "only_pdf"))).send()
            continue
        progress: dict = {"stage": "reading", "done": 0, "total": 0}
        msg = cl.Message(content=t(lang, "indexing", name=name))
        await msg.send()
        t0 = time.perf_counter()
        task = asyncio.ensure_future(cl.make_async(_ingest_file)(c, state, el.path, name, progress))
        last = None
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if progress["total"] and (progress["stage"], progress["done"]) != last:
                last = (progress["stage"], progress["done"])
                msg.content = t(lang, progress["stage"], name=name, done=progress["done"], total=progress["total"])
                await msg.update()
        try:
            doc, result = task.result()
        except KbchatError as err:
            msg.content = t(lang, "not_indexed", name=name, reason=getattr(err, "reason", str(err)))
            await msg.update()
            continue
        except Exception as err:  # never a stack trace in the chat
            log.exception("ingest of %s failed", name)
            msg.content = t(lang, "not_indexed", name=name, reason=f"unexpected error ({type(err).__name__}).")
            await msg.update()
            continue
        state.has_uploads = True
        state.uploads[doc.doc_hash] = (el.path, el.chainlit_key, name)
        secs = time.perf_counter() - t0
        if result.status == "unchanged":
            msg.content = t(lang, "unchanged", name=name)
        elif result.status == "duplicate":
            msg.content = t(lang, "duplicate", name=name, other=result.doc.source)
        else:
            msg.content = t(lang, "indexed", name=name, pages=doc.pages, passages=len(doc.passages), secs=secs)
        await msg.update()


# ---------------------------------------------------------------- answers

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def _md_escape(text: str) -> str:
    """Render passage text inert: no links, HTML or formatting from the PDF."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _search_query(question: str, history: list) -> str:
    """Follow-ups ("and its TDP?") are searched together with the previous question."""
    prev = next((t for r, t in reversed(history) if r == "user"), None)
    short = len(question.split()) <= 12 and len(question) <= 80
    return f"{prev}\n{question}" if prev and short else question


def _source_element(c: Core, state: ChatState, n: int, hit):
    name = f"Source {n}"
    up = state.uploads.get(hit.passage.doc_hash)
    if up:
        path, key, _ = up
        return cl.Pdf(name=name, display="side", page=hit.page, path=path, chainlit_key=key)
    return cl.Pdf(name=name, display="side", page=hit.page, url=f"/kbchat/pdf/{hit.passage.doc_hash}")


_MD_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?[^)\n]*\)")


def _inert(text: str) -> str:
    """Model output may echo passage text: no live links/images (exfiltration) and no raw HTML."""
    text = _MD_LINK.sub(lambda m: f"{m.group(1)} (`{m.group(2)}`)" if m.group(2) else m.group(1), text)
    return text.replace("<", "\\<")


def _render(answer_text: str, hits: list, citations: list, lang: str = "en") -> tuple[str, list[int]]:
    """Answer with [n] turned into 'Source n' pills, then the sources: cited first."""
    answer_text = _inert(answer_text)
    order = [ci.n for ci in citations] + [i for i in range(1, len(hits) + 1)
                                         if i not in {ci.n for ci in citations}]
    renumber = {old: new for new, old in enumerate(order, 1)}

    def sub(m: re.Match) -> str:
        nums = [int(x) for x in re.findall(r"\d+", m.group(0))]
        names = [f"Source {renumber[x]}" for x in nums if x in renumber]
        return " (" + ", ".join(names) + ")" if names else m.group(0)

    body = re.sub(r"\s*[\[【]\s*\d+(?:\s*[,，、]\s*\d+)*\s*[\]】]", sub, answer_text)
    lines = []
    cited = {ci.n for ci in citations}
    for old in order:
        h = hits[old - 1]
        excerpt = _md_escape(h.text)
        excerpt = excerpt[:220] + ("…" if len(excerpt) > 220 else "")
        label = f" ({t(lang, 'printed')} {h.page_label})" if h.page_label else ""
        head = t(lang, "cited") if cited else t(lang, "found")
        if old == order[0]:
            lines.append(f"\n\n**{head}**")
        elif old not in cited and order.index(old) == len(cited) and cited:
            lines.append(f"\n**{t(lang, 'others')}**")
        lines.append(f"- Source {renumber[old]} — {_md_escape(h.source)}, {page_ref(lang, h.page)}{label}: “{excerpt}”")
    return body + "\n".join(lines), order


@cl.on_message
async def on_message(message: cl.Message) -> None:
    c = core()
    sid = cl.context.session.id
    state = CHATS.get(sid)
    if state is None:  # e.g. the server restarted under an open tab
        await on_chat_start()
        state = CHATS[sid]
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


async def answer_question(c: Core, state: ChatState, question: str) -> None:
    lang = _lang()
    p = _persona(state)
    cs = _chat_settings()
    k = int(cs.get("k") or p.retrieval.k)
    reasoning = bool(cs.get("reasoning", p.reasoning_default))
    names = ([state.collection] if state.has_uploads else []) + (
        [c.settings.shared_collection] if p.retrieval.use_shared_knowledge else [])
    reranker = c.reranker if cs.get("rerank", True) else None

    def do_search():
        colls = [c.store.collection(n) for n in names]
        return search(colls, c.embedder, _search_query(question, state.history),
                      k=k, candidate_k=c.settings.candidate_k, reranker=reranker)

    try:
        hits = await cl.make_async(do_search)() if names else []
    except KbchatError as err:
        await cl.Message(content=t(lang, "search_failed", error=err)).send()
        return

    messages = ans.build_messages(question, hits, system_prompt=p.system_prompt(), few_shot=p.few_shot(),
                                  history=state.history[-2 * HISTORY_TURNS:],
                                  reasoning=reasoning, style=c.settings.reasoning_style)
    answer_msg = None  # created at the first answer token, so the Thinking step sits above it
    think: cl.Step | None = None
    text, thoughts, error = [], [], None
    try:
        llm = ans.make_llm(c.settings, temperature=p.temperature)
        async for chunk in ans.astream(llm, messages):
            if chunk.kind == "reasoning":
                if not reasoning:
                    thoughts.append(chunk.text)
                    continue
                if think is None:
                    think = cl.Step(name="Thinking", type="llm", show_input=False, default_open=False)
                    think.start = datetime.now(timezone.utc).isoformat()
                    await think.send()
                thoughts.append(chunk.text)
                await think.stream_token(chunk.text)
            else:
                text.append(chunk.text)
                if answer_msg is None:
                    answer_msg = cl.Message(content="")
                await answer_msg.stream_token(chunk.text)
    except LLMError as err:
        error = err
    except Exception as err:  # never a stack trace in the chat
        log.exception("LLM call failed")
        error = LLMError(f"The language model failed ({type(err).__name__}).")
    if think is not None:
        think.end = datetime.now(timezone.utc).isoformat()
        await think.update()

    answer_text = "".join(text)
    if answer_msg is None:
        answer_msg = cl.Message(content="")
    if error is not None:
        prefix = t(lang, "llm_failed", error=error)
        if answer_text:
            prefix = f"{answer_text}\n\n" + t(lang, "llm_cut", error=error)
        citations = []
        body, order = _render(prefix if hits else f"⚠️ {error}", hits, citations, lang)
    else:
        citations = ans.cite(answer_text, hits)
        if not hits:
            answer_text += "\n\n" + t(lang, "no_hits")
        if c.sync_status == "running" and c.settings.shared_collection in names:
            answer_text += "\n\n" + t(lang, "syncing")
        body, order = _render(answer_text, hits, citations, lang)
    answer_msg.content = body
    answer_msg.elements = [_source_element(c, state, i, hits[old - 1]) for i, old in enumerate(order, 1)]
    if error is None:
        answer_msg.actions = _share_actions(answer_msg.id, lang)
        state.answers[answer_msg.id] = {
            "question": question, "answer": answer_text, "reasoning": "".join(thoughts),
            "persona": p, "hits": hits, "citations": citations, "settings": dict(cs, k=k, reasoning=reasoning),
        }
        state.history += [("user", question), ("assistant", answer_text)]
    await answer_msg.send()


# ---------------------------------------------------------------- sharing (issue 4)


def _share_actions(answer_id: str, lang: str = "en") -> list:
    return [cl.Action(name="share_qa", id=f"share-{answer_id}", icon="share-2", label=t(lang, "share"),
                      tooltip="Store this Q&A (with consent) for fine-tuning", payload={"answer_id": answer_id})]


def _shared_actions(answer_id: str, lang: str = "en") -> list:
    return [cl.Action(name="shared_noop", id=f"shared-{answer_id}", icon="check", label=t(lang, "shared"),
                      tooltip="This Q&A is in the shared collection", payload={"answer_id": answer_id}),
            cl.Action(name="unshare_qa", id=f"undo-{answer_id}", icon="undo-2", label=t(lang, "undo"),
                      tooltip="Remove this Q&A from the shared collection", payload={"answer_id": answer_id})]


def _share_store():
    from kbchat.share import ShareStore, default_path

    c = core()
    if getattr(c, "share_store", None) is None:
        c.share_store = ShareStore(default_path(c.settings))
    return c.share_store


def _share_record(answer_id: str, rec: dict):
    from kbchat.share import SharedQA

    c = core()
    user = cl.user_session.get("user")
    sources = [{"n": ci.n, "file": ci.hit.source, "page": ci.hit.page, "text": ci.hit.text}
               for ci in rec["citations"]] or [
        {"n": i, "file": h.source, "page": h.page, "text": h.text} for i, h in enumerate(rec["hits"], 1)]
    return SharedQA(
        user=getattr(user, "identifier", None), persona_id=rec["persona"].id,
        persona_prompt=rec["persona"].system_prompt(), question=rec["question"], answer=rec["answer"],
        reasoning=rec["reasoning"], sources=sources, model=c.settings.llm_model,
        settings=rec["settings"], answer_key=answer_id,
    )


async def _swap_actions(action: cl.Action, new: list) -> None:
    await action.remove()
    for other in ("share", "shared", "undo"):
        if other != action.id.split("-")[0]:
            await cl.Action(name="x", id=f"{other}-{action.payload['answer_id']}", payload={}).remove()
    for a in new:
        await a.send(for_id=action.payload["answer_id"])


@cl.action_callback("share_qa")
async def on_share(action: cl.Action):
    answer_id = action.payload["answer_id"]
    state = CHATS.get(cl.context.session.id)
    rec = state.answers.get(answer_id) if state else None
    if rec is None:
        await cl.Message(content=t(_lang(), "share_gone")).send()
        return
    store = _share_store()
    first_time = not cl.user_session.get("share_note_shown")
    await cl.make_async(store.share)(_share_record(answer_id, rec))  # idempotent on the answer id
    await _swap_actions(action, _shared_actions(answer_id, _lang()))
    if first_time:
        cl.user_session.set("share_note_shown", True)
        await cl.Message(content=t(_lang(), "share_note")).send()


@cl.action_callback("unshare_qa")
async def on_unshare(action: cl.Action):
    answer_id = action.payload["answer_id"]
    await cl.make_async(_share_store().delete_by_key)(answer_id)
    await _swap_actions(action, _share_actions(answer_id, _lang()))


@cl.action_callback("shared_noop")
async def on_shared_noop(action: cl.Action):
    return None

"""kbchat's own HTTP routes and ASGI middlewares on Chainlit's FastAPI app: the PDFs behind Sources
(a knowledge base's for those who may read it, a thread's uploads for its owner; 404 to everybody else,
so a file's existence is never confirmed), the upload size guard, the per-browser binding of
Chainlit's session files and the client address used by the login limit."""

from __future__ import annotations

import asyncio
import re
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from chainlit.auth import get_current_user, reuseable_oauth
from chainlit.config import config
from chainlit.server import app as cl_app
from chainlit.session import WebsocketSession
from fastapi import Depends, HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse

from kbchat.knowledge import DEFAULT_BASE, base_names, collection_name, reader_of
from kbchat.records.history import thread_collection
from kbchat.ui import admin, runtime
from kbchat.ui.auth import CLIENT

_HASH = re.compile(r"[0-9a-f]{16,64}")
_THREAD = re.compile(r"[0-9A-Za-z-]{1,64}")
_PASSAGE = re.compile(r"[0-9a-f]{16}-\d{1,6}-\d{1,9}")


def _front(path: str) -> None:
    """Move the route just added in front of Chainlit's SPA catch-all (which would shadow it)."""
    cl_app.router.routes.insert(0, cl_app.router.routes.pop())


def _cited_passage(collection: str, doc_hash: str, passage_id: str | None):
    """The passage a Source names, if it is one of this document's passages in this collection."""
    if not passage_id or not _PASSAGE.fullmatch(passage_id):
        return None
    passage = runtime.core().store.collection(collection).passages([passage_id]).get(passage_id)
    return passage if passage is not None and passage.doc_hash == doc_hash else None


def _marked(collection: str, path: str, doc_hash: str, passage_id: str | None, cache_dir: Path) -> str:
    """The PDF to serve: a cached copy with the cited passage highlighted, or the file itself when no
    passage is asked for or it cannot be found (never an error: the page still opens)."""
    from kbchat.documents.highlight import highlighted_pdf
    from kbchat.documents.reader import ocr_config

    c = runtime.core()
    try:
        passage = _cited_passage(collection, doc_hash, passage_id)
        if passage is None:
            return path
        marked = highlighted_pdf(path, passage, cache_dir, ocr=ocr_config(c.settings))
    except Exception:
        runtime.log.exception("highlighting passage %s failed; serving the plain PDF", passage_id)
        return path
    return str(marked) if marked else path


def _passage_text(collection: str, doc_hash: str, passage_id: str | None) -> PlainTextResponse:
    """A Markdown/text source has no PDF to open: its Source shows the cited passage."""
    passage = _cited_passage(collection, doc_hash, passage_id)
    if passage is None:
        raise HTTPException(status_code=404, detail="not found")
    return PlainTextResponse(passage.text)


def _is_text(path: str) -> bool:
    from kbchat.documents.reader import TEXT_TYPES

    return Path(path).suffix.lower() in TEXT_TYPES


def _pdf_response(path: str) -> FileResponse:
    # Cached copies change name with the passage; the browser may keep them for the session only.
    return FileResponse(path, media_type="application/pdf", headers={"Cache-Control": "private, max-age=3600"})


async def viewer(request: Request):
    """Who opens a Source: a program's API key (Authorization: Bearer kbk_…, the citation URLs of the API),
    or Chainlit's signed-in user (cookie)."""
    from kbchat.ui.api.gate import ApiError, bearer, caller_of

    if bearer(request) is not None:
        try:
            return await caller_of(request, None)
        except ApiError as err:  # a bad key opens nothing (and confirms nothing)
            raise HTTPException(status_code=404 if err.status != 429 else 429, detail="not found") from None
    return await get_current_user(await reuseable_oauth(request))


def _may_read(user, base: str) -> bool:
    """Whether the route's signed-in user may read ``base`` now (their role and groups from the database)."""
    c = runtime.core()
    r = reader_of(c.accounts, getattr(user, "identifier", None))
    return c.access.may_read(r.name, r.is_admin, base)


async def shared_pdf(doc_hash: str, passage: str | None = None, current_user=Depends(viewer)):
    """GET /kbchat/pdf/<doc_hash>[?passage=<id>]: a default-base PDF, for a signed-in user who may read that
    base, with the cited passage highlighted when one is named (no copy per citation of the original)."""
    if not _HASH.fullmatch(doc_hash) or not await asyncio.to_thread(_may_read, current_user, DEFAULT_BASE):
        raise HTTPException(status_code=404, detail="not found")
    return await _base_document(runtime.core().settings.shared_collection, doc_hash, passage)


async def base_pdf(base: str, doc_hash: str, passage: str | None = None, current_user=Depends(viewer)):
    """GET /kbchat/kb/<base>/<doc_hash>[?passage=<id>]: a document of knowledge base <base>, for a signed-in
    user who may read it (404 otherwise, as for an unknown base or file), highlighted as above."""
    c = runtime.core()
    if not _HASH.fullmatch(doc_hash) or base not in await asyncio.to_thread(base_names, c.settings):
        raise HTTPException(status_code=404, detail="not found")
    if not await asyncio.to_thread(_may_read, current_user, base):
        raise HTTPException(status_code=404, detail="not found")
    return await _base_document(collection_name(base, c.settings), doc_hash, passage)


async def _base_document(name: str, doc_hash: str, passage: str | None):
    c = runtime.core()
    path = await asyncio.to_thread(c.store.collection(name).path_of, doc_hash)
    if path and _is_text(path):
        return await asyncio.to_thread(_passage_text, name, doc_hash, passage)
    if not path or not Path(path).is_file() or Path(path).suffix.lower() != ".pdf":
        raise HTTPException(status_code=404, detail="not found")
    served = await asyncio.to_thread(_marked, name, path, doc_hash, passage, c.settings.data_dir / "highlights")
    return _pdf_response(served)


async def upload_pdf(thread_id: str, doc_hash: str, passage: str | None = None,
                     current_user=Depends(viewer)):
    """GET /kbchat/upload/<thread_id>/<doc_hash>[?passage=<id>]: a file uploaded in a thread, for its
    owner only (404 for everybody else, so its existence is not revealed), highlighted like above.
    Marked copies stay in the thread's folder: they go when the thread is deleted."""
    if not _HASH.fullmatch(doc_hash) or not _THREAD.fullmatch(thread_id) or current_user is None:
        raise HTTPException(status_code=404, detail="not found")
    row = await asyncio.to_thread(runtime.core().history.upload, thread_id, doc_hash)
    if row is None or row["owner"] != current_user.identifier or not Path(row["path"]).is_file():
        raise HTTPException(status_code=404, detail="not found")
    if _is_text(row["path"]):
        return await asyncio.to_thread(_passage_text, thread_collection(thread_id), doc_hash, passage)
    if Path(row["path"]).suffix.lower() != ".pdf":
        raise HTTPException(status_code=404, detail="not found")
    cache = Path(row["path"]).parent / "highlights"
    served = await asyncio.to_thread(_marked, thread_collection(thread_id), row["path"], doc_hash, passage, cache)
    return _pdf_response(served)


def upload_url(thread_id: str, doc_hash: str, passage_id: str | None = None) -> str:
    return f"/kbchat/upload/{thread_id}/{doc_hash}" + (f"?passage={passage_id}" if passage_id else "")


def base_url(base: str, doc_hash: str, passage_id: str | None = None) -> str:
    return f"/kbchat/kb/{base}/{doc_hash}" + (f"?passage={passage_id}" if passage_id else "")


def shared_url(doc_hash: str, passage_id: str | None = None) -> str:
    return f"/kbchat/pdf/{doc_hash}" + (f"?passage={passage_id}" if passage_id else "")


class UploadLimit:
    """ASGI guard for POST /project/file: refuse a too-large upload from its Content-Length, before
    Chainlit reads the whole body into memory (it checks max_size_mb only after reading)."""

    OVERHEAD = 64 * 1024  # multipart headers around the file

    def __init__(self, app, max_bytes: int, path: str = r".*/project/file"):
        self.app = app
        self.max_bytes = max_bytes
        self.path = re.compile(path)  # the POST paths guarded (the console's uploads get their own guard)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not self.path.fullmatch(scope["path"]):
            return await self.app(scope, receive, send)
        from kbchat.ui.api.gate import guard_body

        return await guard_body(self.app, scope, receive, send, self.max_bytes + self.OVERHEAD,
                                lambda: self._refuse(send, scope))

    async def _refuse(self, send, scope):
        import json

        from kbchat.messages import t

        mb = self.max_bytes // (1024 * 1024)
        accept = dict(scope.get("headers") or []).get(b"accept-language", b"").decode("latin-1")
        lang = accept.split(",")[0].split(";")[0].strip() or "en"  # the browser's first language
        body = json.dumps({"detail": t(lang, "too_large", mb=mb)}, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class FileOwner:
    """Bind a chat's session files to the browser that opened it. Chainlit serves /project/file/<id>?session_id=S
    to any signed-in user who knows S; this sets a random HttpOnly cookie on the first response and refuses
    (404) file requests for session S whose cookie differs from the one S's socket connected with.
    Clients that never had the cookie (API/socket.io scripts) are not bound."""

    COOKIE = "kbchat_client"

    def __init__(self, app):
        self.app = app

    @staticmethod
    def _cookie(header: str | None) -> str | None:
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
        token = secrets.token_urlsafe(24)

        async def with_cookie(msg):
            if msg["type"] == "http.response.start":
                msg = dict(msg, headers=[*msg.get("headers", []), (
                    b"set-cookie", f"{self.COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode())])
            await send(msg)

        return await self.app(scope, receive, with_cookie)


class ClientAddress:
    """Remember the client address of each HTTP request (the login limit and log lines read it)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            client = scope.get("client")
            CLIENT.set(client[0] if client else None)
        return await self.app(scope, receive, send)


def install() -> None:
    cl_app.add_api_route("/kbchat/pdf/{doc_hash}", shared_pdf, methods=["GET"])
    _front("/kbchat/pdf")
    cl_app.add_api_route("/kbchat/kb/{base}/{doc_hash}", base_pdf, methods=["GET"])
    _front("/kbchat/kb")
    cl_app.add_api_route("/kbchat/upload/{thread_id}/{doc_hash}", upload_pdf, methods=["GET"])
    _front("/kbchat/upload")
    f = config.features.spontaneous_file_upload
    mb = int(getattr(f, "max_size_mb", 0) or 50) if f else 50
    cl_app.add_middleware(UploadLimit, max_bytes=mb * 1024 * 1024)
    n = int(getattr(f, "max_files", 0) or 10) if f else 10  # the console's uploads: up to n such files at once
    cl_app.add_middleware(UploadLimit, max_bytes=n * mb * 1024 * 1024, path=r"/admin/knowledge/[^/]+/upload")
    cl_app.add_middleware(FileOwner)
    cl_app.add_middleware(ClientAddress)
    admin.install(cl_app)  # the console at /admin (kbchat/ui/admin)


install()

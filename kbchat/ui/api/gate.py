"""Who calls the HTTP API and whether they may: the `Authorization: Bearer kbk_…` key (401 when unknown,
revoked or expired, or its user is gone), its scopes (403), its rate (429 with Retry-After), the body size
limit, and every error as one JSON line in the OpenAI shape ``{"error": {"message", "type", "param",
"code"}}`` so standard clients show it."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kbchat.knowledge import Reader
from kbchat.records.keys import ApiKey, ApiKeys
from kbchat.ui import runtime
from kbchat.ui.access import reader_for
from kbchat.ui.auth import CLIENT

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """One refused request: HTTP ``status`` and one English line (programs read it, people debug with it)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict | None = None,
        type_: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}
        self.type = type_ or _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(err.message, err.type, err.code, err.param), status_code=err.status, headers=err.headers
    )


def install_errors(app) -> None:
    """Every error of a sub-app (ours, FastAPI's validation, an unknown route, a crash) in the OpenAI
    shape."""

    async def on_api(_request, err: ApiError):
        return error_response(err)

    async def on_validation(_request, err: RequestValidationError):
        first = (err.errors() or [{}])[0]
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error_response(
            ApiError(
                400, f"{where or 'body'}: {first.get('msg', 'invalid')}", code="invalid_value", param=where
            )
        )

    async def on_http(_request, err: StarletteHTTPException):
        return error_response(
            ApiError(err.status_code, str(err.detail), headers=getattr(err, "headers", None))
        )

    async def on_crash(_request, err: Exception):
        runtime.log.exception("API request failed")
        return error_response(
            ApiError(
                500, f"internal error ({type(err).__name__}); the server keeps serving", code="internal_error"
            )
        )

    app.add_exception_handler(ApiError, on_api)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


# ---------------------------------------------------------------- the caller


@dataclass(frozen=True)
class Caller:
    """The key's user, as the database has them now."""

    key: ApiKey
    reader: Reader

    @property
    def identifier(self) -> str:  # the shape of Chainlit's User where routes expect one
        return self.reader.name or ""

    @property
    def name(self) -> str:
        return self.reader.name or ""

    @property
    def is_admin(self) -> bool:
        return self.reader.is_admin


def bearer(request: Request) -> str | None:
    """The kbk_ key of ``Authorization: Bearer kbk_…`` (None when the header names something else)."""
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value.startswith("kbk_") else None


def _check_key(key: str) -> Caller:
    c = runtime.core()
    found, why = ApiKeys(c.db).verify(key)
    if found is None or why:
        raise ApiError(
            401,
            {
                "unknown": "invalid API key",
                "revoked": "this API key was revoked",
                "expired": "this API key has expired",
            }[why or "unknown"],
            code=f"{why}_api_key",
        )
    acct = c.accounts.get(found.user)
    if acct is None:
        raise ApiError(401, "the user of this API key no longer exists", code="unknown_user")
    if acct.disabled:
        raise ApiError(401, "the user of this API key is disabled", code="disabled_user")
    return Caller(found, reader_for(c, found.user))


async def caller_of(request: Request, scope: str | None) -> Caller:
    """The request's Caller, checked: a key (401), ``scope`` among its scopes (403), its rate (429)."""
    key = bearer(request)
    if key is None:
        raise ApiError(401, "no API key: send Authorization: Bearer kbk_…", code="missing_api_key")
    who = await asyncio.to_thread(_check_key, key)
    if scope and scope not in who.key.scopes:
        raise ApiError(403, f"this API key lacks the {scope!r} scope", code="missing_scope", param=scope)
    wait = LIMITER.take(who.key.id, runtime.core_settings().api_rate_per_minute)
    if wait:
        raise ApiError(
            429,
            f"rate limit: {runtime.core_settings().api_rate_per_minute} requests a minute for "
            f"this key; retry in {wait} s",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(wait)},
        )
    return who


def needs(scope: str | None, *, admins: bool = False):
    """A FastAPI dependency: the Caller of a request that needs ``scope`` (and an admin, with ``admins``),
    checked before the body is read or validated."""

    async def dependency(request: Request) -> Caller:
        who = await caller_of(request, scope)
        return admin(who) if admins else who

    return dependency


def admin(who: Caller) -> Caller:
    if not who.is_admin:
        raise ApiError(403, "administrators only", code="admin_only")
    return who


async def audit(who: Caller, action: str, target: str | None = None, detail: dict | None = None) -> None:
    """One audit line for an API change, under the key's user, with the key id and the client address."""
    try:
        await asyncio.to_thread(
            runtime.core().access.record,
            action,
            who.name,
            target,
            {**(detail or {}), "key": who.key.id},
            CLIENT.get(),
        )
    except Exception:
        runtime.log.exception("audit: recording %s failed", action)


# ---------------------------------------------------------------- limits


class RateLimiter:
    """At most N requests per key in any 60 seconds (a sliding window per app process)."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, per_minute: int, now: float | None = None) -> int:
        """0 when this request may go on (and counts it); else whole seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._seen.setdefault(key_id, deque())
            while q and q[0] <= now - self.WINDOW:
                q.popleft()
            if len(q) >= per_minute:
                return max(1, math.ceil(q[0] + self.WINDOW - now))
            q.append(now)
            return 0


LIMITER = RateLimiter()


async def guard_body(app, scope, receive, send, limit: int, refuse) -> None:
    """Run ``app`` on an HTTP request whose body may be at most ``limit`` bytes: ``await refuse()`` answers
    instead when its Content-Length says more, or as soon as a chunked body passes the limit (the app then
    reads a disconnect, and whatever it answers is replaced by the refusal)."""
    length = dict(scope["headers"]).get(b"content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return await refuse()
    seen, over = 0, False

    async def counted():
        nonlocal seen, over
        msg = await receive()
        seen += len(msg.get("body", b""))
        if seen > limit:
            over = True
            return {"type": "http.disconnect"}
        return msg

    async def guarded_send(msg):
        if not over:
            return await send(msg)
        if msg["type"] == "http.response.start":
            await refuse()

    return await app(scope, counted, guarded_send)


class BodyLimit:
    """ASGI guard of the API paths: a body over the limit is refused (413, OpenAI shape) from its
    Content-Length, or as soon as a chunked one passes it, before anything reads it whole."""

    def __init__(self, app, *, prefixes: tuple[str, ...], max_bytes, upload_bytes, upload_suffix: str):
        self.app, self.prefixes = app, prefixes
        self.max_bytes, self.upload_bytes, self.upload_suffix = max_bytes, upload_bytes, upload_suffix

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefixes):
            return await self.app(scope, receive, send)
        limit = self.upload_bytes() if path.endswith(self.upload_suffix) else self.max_bytes()
        return await guard_body(self.app, scope, receive, send, limit, lambda: self._refuse(send, limit))

    @staticmethod
    async def _refuse(send, limit: int):
        import json

        body = json.dumps(
            error_body(
                f"request body too large (limit {limit // 1024} KB)",
                "invalid_request_error",
                "body_too_large",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


__all__ = [
    "LIMITER",
    "ApiError",
    "BodyLimit",
    "Caller",
    "RateLimiter",
    "admin",
    "audit",
    "bearer",
    "caller_of",
    "error_body",
    "error_response",
    "guard_body",
    "install_errors",
    "needs",
]

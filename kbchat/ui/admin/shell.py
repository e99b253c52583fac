"""The admin console's shell: who may enter (an admin, read from the database on every request), the CSRF
token and the same-origin check every POST passes, the page language, the layout every section renders
into, and the audit line every change writes.

How a section adds a page (the personas section is the model to follow):

1. A module ``kbchat/ui/admin/<slug>.py`` with ``router = APIRouter()`` and its handlers. Every handler
   takes ``adm: Admin = Depends(admin)``: that dependency refuses anyone who is not an admin now (no sign-in:
   a redirect to the login page; a plain user: 403), and on POST refuses a cross-site request and a missing
   or forged CSRF token before the handler runs. Paths are absolute (``/admin/<slug>``, ...). State changes
   are POST only and end with a redirect (``done(adm, "/admin/<slug>", "adm_saved")``).
2. Render with ``page(adm, "<slug>.html", title_key, **values)``: the template
   ``kbchat/ui/admin/templates/<slug>.html`` extends ``base.html`` (``{% block body %}``); ``t("adm_...")``
   gives a line in the page's language, ``{{ csrf_field() }}`` goes inside every ``<form method=post>``.
3. Write every change to the audit log: ``adm.audit("persona.save", persona_id, {...})`` (never a password
   or a passage's text).
4. Register the section: its slug in ``SECTIONS`` below (nav order, label key ``adm_nav_<slug>``) and the
   module in ``MODULES`` of ``kbchat/ui/admin/__init__.py``; add its routes to ``ROUTES`` in
   ``tests/ui/test_admin_security.py`` (the refusal test covers every console route and fails on one
   it does not list).
5. New lines in all five ``kbchat/locales/*.py`` (prefix ``adm_``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlsplit

from chainlit.auth.cookie import OAuth2PasswordBearerWithCookie
from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from kbchat.messages import MESSAGES, t
from kbchat.personas import resolve_language
from kbchat.ui import auth, runtime
from kbchat.ui.auth import CLIENT

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
LANGS = {"en": "English", "zh-TW": "繁體中文", "zh-CN": "简体中文", "ja": "日本語", "ko": "한국어"}
# The console's sections in nav order: (slug, line key of its name). A slug whose module is not written yet
# shows the "not available yet" page.
SECTIONS: list[tuple[str, str]] = [
    ("people", "adm_nav_people"),
    ("knowledge", "adm_nav_knowledge"),
    ("personas", "adm_nav_personas"),
    ("review", "adm_nav_review"),
    ("usage", "adm_nav_usage"),
    ("audit", "adm_nav_audit"),
    ("system", "adm_nav_system"),
]
LOGIN = "/login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

_token = OAuth2PasswordBearerWithCookie(tokenUrl="/login", auto_error=False)


class NotSignedIn(Exception):
    """No valid session: the console answers with a redirect to the login page."""


def page_language(request: Request) -> str:
    """The console's language: ?lang= (remembered in a cookie), else the cookie, else the browser's first
    Accept-Language tag that kbchat has (as the chat resolves it)."""
    asked = request.query_params.get("lang") or request.cookies.get("kbchat_admin_lang")
    if asked and asked in LANGS:
        return asked
    for part in (request.headers.get("accept-language") or "").split(","):
        tag = part.split(";")[0].strip()
        if tag and tag != "*":
            lang = resolve_language(tag, MESSAGES)
            if lang != "en" or tag.lower().startswith("en"):
                return lang
    return "en"


def csrf_token(session_token: str) -> str:
    """The CSRF token bound to one session: an HMAC of the session's JWT under the app's secret, so it
    changes with every sign-in and cannot be made without the secret."""
    secret = (os.environ.get("CHAINLIT_AUTH_SECRET") or "").encode()
    return hmac.new(secret, b"kbchat-admin-csrf\0" + session_token.encode(), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this site: its Origin (or, without one, its Referer) names the
    host the request was sent to. A request with neither is refused too."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    host = (request.headers.get("x-forwarded-host") or request.headers.get("host") or "").split(",")[0].strip()
    return bool(host) and urlsplit(source).netloc.lower() == host.lower()


@dataclass
class Admin:
    """The signed-in admin of one console request."""

    name: str
    display_name: str
    lang: str
    csrf: str
    request: Request

    def t(self, key: str, /, **kw) -> str:
        return t(self.lang, key, **kw)

    def audit(self, action: str, target: str | None = None, detail: dict | None = None) -> None:
        """One audit line for a change made in the console (by this admin, from this address)."""
        runtime.core().access.record(action, self.name, target, {**(detail or {}), "via": "console"},
                                     address=CLIENT.get())

    async def audit_async(self, action: str, target: str | None = None, detail: dict | None = None) -> None:
        await asyncio.to_thread(self.audit, action, target, detail)


class Refused(Exception):
    """A console request refused (403 not an admin / cross-site / bad token, 404 unknown, 400 bad input):
    answered with a small page in the admin's language."""

    def __init__(self, status: int, key: str, **params):
        super().__init__(key)
        self.status, self.key, self.params = status, key, params


def _refuse(lang: str, status: int, key: str) -> Refused:
    return Refused(status, key)


async def admin(request: Request, token: str | None = Depends(_token)) -> Admin:
    """The console's gate, asked on every request: the session's account as the database has it now must be
    an admin; a POST must come from this site and carry the session's CSRF token."""
    lang = page_language(request)
    try:
        user = await auth.current_user(token)
    except HTTPException:
        raise NotSignedIn() from None
    if (user.metadata or {}).get("role") != "admin":
        raise _refuse(lang, 403, "adm_forbidden")
    expected = csrf_token(token or "")
    if request.method not in ("GET", "HEAD"):
        if not same_origin(request):
            raise _refuse(lang, 403, "adm_cross_site")
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            sent = form.get(CSRF_FIELD)
        if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
            raise _refuse(lang, 403, "adm_bad_csrf")
    return Admin(user.identifier, user.display_name or user.identifier, lang, expected, request)


def page(adm: Admin, template: str, title_key: str, *, active: str = "", status: int = 200,
         **values) -> HTMLResponse:
    """One console page in the admin's language, inside the shell (nav, language menu, notices)."""
    lang = adm.lang
    values.setdefault("notice", adm.request.query_params.get("notice"))
    values.setdefault("error", None)
    ctx = {
        "adm": adm, "lang": lang, "langs": LANGS, "sections": SECTIONS, "active": active,
        "title": t(lang, title_key), "t": partial(t, lang),
        "csrf_field": lambda: Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{adm.csrf}">'),
        "notice_text": _notice(lang, values.get("notice")), **values,
    }
    response = TEMPLATES.TemplateResponse(adm.request, template, ctx, status_code=status)
    if adm.request.query_params.get("lang") in LANGS:
        response.set_cookie("kbchat_admin_lang", adm.request.query_params["lang"], samesite="strict",
                            httponly=True, path="/admin")
    return response


def _notice(lang: str, key: str | None) -> str | None:
    """A notice named in the redirect after a change (only known adm_ keys: the query string is the user's)."""
    if key and key.startswith("adm_") and key in MESSAGES["en"]:
        return t(lang, key)
    return None


def done(adm: Admin, path: str, notice: str = "adm_saved") -> RedirectResponse:
    """The answer to a successful POST: back to a page (303, so a reload does not post again)."""
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}notice={quote(notice)}", status_code=303)


def not_signed_in_handler(request: Request, exc: NotSignedIn) -> RedirectResponse:
    """No sign-in: to the login page (the chat's own), for a GET or a POST alike."""
    return RedirectResponse(LOGIN, status_code=303)


class EarlyGate:
    """ASGI guard: a console POST from anyone who is not an admin now is answered (login page or 403)
    before its body is read, so a visitor cannot make the server receive and spool an upload only to
    refuse it. The route's ``admin`` dependency checks everything again (CSRF and origin included)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/admin/"):
            return await self.app(scope, receive, send)
        request = Request(scope)
        try:
            user = await auth.current_user(await _token(request))
        except HTTPException:
            return await not_signed_in_handler(request, NotSignedIn())(scope, receive, send)
        if (user.metadata or {}).get("role") != "admin":
            return await refused_page(request, Refused(403, "adm_forbidden"))(scope, receive, send)
        return await self.app(scope, receive, send)


def refused_page(request: Request, exc: Refused) -> HTMLResponse:
    """The page a refused console request gets, with its status."""
    lang = page_language(request)
    ctx = {"lang": lang, "t": partial(t, lang), "message": t(lang, exc.key, **exc.params), "status": exc.status}
    return TEMPLATES.TemplateResponse(request, "refused.html", ctx, status_code=exc.status)


__all__ = ["Admin", "EarlyGate", "LANGS", "NotSignedIn", "Refused", "SECTIONS", "admin", "csrf_token", "done", "page",
           "page_language", "same_origin"]

"""Invitation links: instead of a one-time password, an admin may give a new user a link that lets them set
their own password, once, within INVITE_HOURS. The link carries the user name and its expiry, signed with the
app's secret together with the account's state (no password yet), so it stops working once a password is
set; nothing is stored. The only console page open without a sign-in (it asks for nothing else)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from functools import partial

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from kbchat.errors import KbchatError
from kbchat.messages import error_text, t
from kbchat.ui import runtime
from kbchat.ui.admin.shell import LOGIN, TEMPLATES, Refused, page_language, same_origin
from kbchat.ui.auth import CLIENT

router = APIRouter()
INVITE_HOURS = 72


def _mac(name: str, expires: int) -> str:
    secret = (os.environ.get("CHAINLIT_AUTH_SECRET") or "").encode()
    return hmac.new(secret, f"kbchat-invite\0{name}\0{expires}\0no-password".encode(), hashlib.sha256).hexdigest()


def invitation_path(name: str, now: float | None = None) -> str:
    """The path of a new invitation for ``name`` (who has no password yet)."""
    expires = int((now or time.time()) + INVITE_HOURS * 3600)
    return f"/invite/{name}/{expires}/{_mac(name, expires)}"


def _valid(name: str, expires: str, mac: str) -> bool:
    if not expires.isdigit() or int(expires) < time.time() or len(mac) != 64:
        return False
    if not hmac.compare_digest(mac, _mac(name, int(expires))):
        return False
    acct = runtime.core().accounts.get(name)
    return acct is not None and not acct.has_password  # used once: a password is set now


def _page(request: Request, status: int = 200, **values):
    lang = page_language(request)
    return TEMPLATES.TemplateResponse(request, "invite.html", {"lang": lang, "t": partial(t, lang), **values},
                                      status_code=status)


@router.get("/invite/{name}/{expires}/{mac}")
async def invitation(request: Request, name: str, expires: str, mac: str):
    """GET /invite/<name>/<expires>/<mac>: the form to choose a password (404 when the link is not valid,
    expired or used)."""
    if not await asyncio.to_thread(_valid, name, expires, mac):
        raise Refused(404, "adm_invite_invalid")
    return _page(request, name=name)


def _set(name: str, password: str) -> None:
    runtime.core().accounts.set_password(name, password)
    runtime.core().access.record("user.password", name, name, {"via": "invitation"}, address=CLIENT.get())


@router.post("/invite/{name}/{expires}/{mac}")
async def accept(request: Request, name: str, expires: str, mac: str, password: str = Form(""),
                 again: str = Form("")):
    """POST /invite/...: set the password (same-origin only), then the login page."""
    if not same_origin(request):
        raise Refused(403, "adm_cross_site")
    if not await asyncio.to_thread(_valid, name, expires, mac):
        raise Refused(404, "adm_invite_invalid")
    lang = page_language(request)
    if password != again:
        return _page(request, 400, name=name, error=t(lang, "adm_invite_mismatch"))
    try:
        await asyncio.to_thread(_set, name, password)
    except KbchatError as err:
        return _page(request, 400, name=name, error=error_text(lang, err))
    return RedirectResponse(LOGIN, status_code=303)

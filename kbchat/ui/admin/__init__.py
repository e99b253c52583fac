"""The admin console at /admin: server-rendered pages (Jinja2) on Chainlit's FastAPI app, one module per
section (people, knowledge, personas, review, usage, audit, system), the shell (the admin-only gate, CSRF,
same-origin POSTs, language, layout, audit) in ``shell.py``; its docstring says how a section adds a page.

``install()`` (called from ``kbchat.ui.routes.install``) puts every console route in front of Chainlit's SPA
catch-all.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from kbchat.ui.admin import invite
from kbchat.ui.admin.shell import HERE, SECTIONS, Admin, NotSignedIn, Refused, admin, not_signed_in_handler, page
from kbchat.ui.admin.shell import EarlyGate, refused_page

# The section modules written so far (slug -> module under kbchat.ui.admin); a slug of SECTIONS missing here
# shows the "not available yet" page.
MODULES: dict[str, str] = {
    "people": "people",
    "knowledge": "knowledge",
    "review": "review",
    "usage": "usage",
    "audit": "audit",
    "system": "system",
    "personas": "personas",
}


def _placeholder(slug: str, label: str):
    async def handler(adm: Admin = Depends(admin)):
        return page(adm, "placeholder.html", label, active=slug)

    handler.__name__ = f"{slug}_placeholder"
    return handler


async def home(adm: Admin = Depends(admin)):
    """GET /admin: the sections, each with one line on what it holds."""
    return page(adm, "home.html", "adm_title")


async def link(adm: Admin = Depends(admin)):
    """GET /admin/link: the chat header's link to the console, for admins (public/admin-link.js asks)."""
    return JSONResponse({"label": adm.t("adm_title"), "url": "/admin"})


def router() -> APIRouter:
    """Every console route: the home page, each written section's router, a placeholder for the others."""
    r = APIRouter()
    r.add_api_route("/admin", home, methods=["GET"])
    r.add_api_route("/admin/link", link, methods=["GET"])
    r.include_router(invite.router)  # /invite/...: a new user sets their password (no sign-in)
    for slug, label in SECTIONS:
        if slug in MODULES:
            r.include_router(importlib.import_module(f"kbchat.ui.admin.{MODULES[slug]}").router)
        else:
            r.add_api_route(f"/admin/{slug}", _placeholder(slug, label), methods=["GET"])
    return r


def install(app) -> None:
    """Add the console to ``app`` (Chainlit's FastAPI app), its routes before the SPA catch-all."""
    before = len(app.router.routes)
    app.include_router(router())
    app.mount("/admin/static", StaticFiles(directory=str(HERE / "static")), name="admin-static")
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added
    app.add_middleware(EarlyGate)
    app.add_exception_handler(NotSignedIn, not_signed_in_handler)
    app.add_exception_handler(Refused, refused_page)


__all__ = ["MODULES", "install", "router"]

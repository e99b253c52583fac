"""kbchat's HTTP API for other programs, on Chainlit's server: the OpenAI-compatible chat at ``/v1``
(openai_compat.py) and the REST API at ``/api/v1`` with its OpenAPI description at ``/api/docs`` (rest.py;
admin.py: base access, persona changes),
both behind API keys (gate.py: keys, scopes, rate, body size, errors in the OpenAI shape)."""

from __future__ import annotations

from fastapi import FastAPI

API_PREFIXES = ("/v1/", "/api/")
UPLOAD_SUFFIX = "/documents"


def _app(**kw) -> FastAPI:
    from kbchat.ui.api.gate import install_errors

    app = FastAPI(**kw)
    install_errors(app)
    return app


def install() -> None:
    """Mount both APIs in front of Chainlit's own routes, and the body-size guard of their paths."""
    from chainlit.config import config
    from chainlit.server import app as cl_app
    from starlette.routing import Mount

    from kbchat.ui import runtime
    from kbchat.ui.api import admin, openai_compat, rest
    from kbchat.ui.api.gate import BodyLimit

    openai_app = _app(title="kbchat OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    openai_app.include_router(openai_compat.router)
    rest_app = _app(
        title="kbchat API",
        version="1",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        description="kbchat as a service: search, knowledge bases, personas, shared Q&A and the "
        "OpenAI-compatible chat. Every call names an API key: `Authorization: Bearer kbk_…` "
        "(kbchat keys create).",
    )
    rest_app.include_router(openai_compat.router, prefix="/v1", tags=["chat (OpenAI-compatible)"])
    rest_app.include_router(rest.router, prefix="/v1")
    rest_app.include_router(admin.router, prefix="/v1")
    for prefix, sub in (("/v1", openai_app), ("/api", rest_app)):
        cl_app.router.routes.insert(0, Mount(prefix, app=sub))

    def upload_bytes() -> int:
        f = config.features.spontaneous_file_upload
        return int(getattr(f, "max_size_mb", 0) or 50) * 1024 * 1024 + 64 * 1024

    cl_app.add_middleware(
        BodyLimit,
        prefixes=API_PREFIXES,
        upload_suffix=UPLOAD_SUFFIX,
        max_bytes=lambda: int(runtime.core_settings().api_max_body_mb * 1024 * 1024),
        upload_bytes=upload_bytes,
    )

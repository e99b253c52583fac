"""System: what `kbchat doctor` reports (CPU, embedder variant and speed, LLM and reranker reachable, data dir
and store, versions), read-only, with the running app's embedder (no second model is loaded)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from kbchat import doctor
from kbchat.ui import runtime
from kbchat.ui.admin.shell import Admin, admin, page

router = APIRouter()
# Check names of kbchat.doctor -> line keys (a name not here is shown as it is).
CHECK_KEYS = {"CPU": "adm_check_cpu", "embedder": "adm_check_embedder", "LLM endpoint": "adm_check_llm",
              "reranker": "adm_check_reranker", "data dir": "adm_check_data", "versions": "adm_check_versions"}


def _report() -> dict:
    c = runtime.core()
    report = doctor.run(c.settings, embedder=c.embedder)
    report["store"] = type(c.store).__name__
    report["database"] = "SQLite" if c.db.is_sqlite else "PostgreSQL"
    report["sync"] = c.sync_status
    return report


@router.get("/admin/system")
async def system(adm: Admin = Depends(admin)):
    """GET /admin/system: the doctor's checks, each with its status and detail, and the versions."""
    report = await asyncio.to_thread(_report)
    return page(adm, "system.html", "adm_nav_system", active="system", report=report, check_keys=CHECK_KEYS)

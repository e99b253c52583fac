"""Audit: the audit log (kbchat.records.access) newest first, filtered by user, action (``user.*`` matches a
family) and time, with a CSV download of what the filter shows."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import date, timedelta

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from kbchat.ui import runtime
from kbchat.ui.admin.shell import Admin, Refused, admin, page

router = APIRouter()
SHOWN = 500


def _lines(user: str, action: str, since: str, until: str) -> list[dict]:
    try:
        start = date.fromisoformat(since).isoformat() if since else None
        end = (date.fromisoformat(until) + timedelta(days=1)).isoformat() if until else None
    except ValueError:
        raise Refused(400, "adm_bad_date") from None
    rows = runtime.core().access.audit_log(since=start, user=user.strip() or None, action=action.strip() or None,
                                           limit=None if end else SHOWN)
    if end:
        rows = [r for r in rows if r["at"] < end][-SHOWN:]
    return rows[::-1]


def _detail(d) -> str:
    return json.dumps(d, ensure_ascii=False, sort_keys=True) if d else ""


@router.get("/admin/audit")
async def audit(adm: Admin = Depends(admin), user: str = "", action: str = "", since: str = "", until: str = ""):
    """GET /admin/audit[?user=&action=&since=&until=]: the newest matching lines of the audit log."""
    filters = {"user": user, "action": action, "since": since, "until": until}
    try:
        rows = await asyncio.to_thread(_lines, user, action, since, until)
    except Refused as err:
        return page(adm, "audit.html", "adm_nav_audit", active="audit", status=400, error=adm.t(err.key), rows=[],
                    filters=filters, detail=_detail, shown=SHOWN, query="")
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return page(adm, "audit.html", "adm_nav_audit", active="audit", rows=rows, filters=filters, detail=_detail,
                shown=SHOWN, query=query)


@router.get("/admin/audit/csv")
async def audit_csv(adm: Admin = Depends(admin), user: str = "", action: str = "", since: str = "",
                    until: str = ""):
    """GET /admin/audit/csv: the same lines as CSV (UTF-8 with BOM)."""
    rows = await asyncio.to_thread(_lines, user, action, since, until)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([adm.t(k) for k in ("adm_when", "adm_user_name", "adm_action", "adm_target", "adm_address",
                                   "adm_detail")])
    for r in rows:
        w.writerow([r["at"], r["user_identifier"] or "", r["action"], r["target"] or "", r["address"] or "",
                    _detail(r["detail"])])
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="kbchat-audit.csv"'})

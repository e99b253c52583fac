"""Usage: questions per day (chart), per persona, per knowledge base and per user, search-only fallbacks,
thumbs rates, the questions the knowledge did not answer grouped by similar wording, the most cited
documents, answer latency p50/p95, and a CSV download of each table (kbchat.records.usage)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime, timedelta, timezone

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from kbchat.knowledge import base_of_collection
from kbchat.messages import t
from kbchat.records.usage import UsageReport, usage_report
from kbchat.search.lexical import analyze_query
from kbchat.ui import runtime
from kbchat.ui.admin import charts
from kbchat.ui.admin.shell import Admin, Refused, admin, page

router = APIRouter()
PERIODS = (7, 30, 90, 365)
TABLES = ("per_day", "per_persona", "per_base", "per_user", "unanswered", "cited")


def _period(days: int, since: str, until: str) -> tuple[date, date]:
    today = datetime.now(timezone.utc).date()
    try:
        end = date.fromisoformat(until) if until else today
        start = date.fromisoformat(since) if since else end - timedelta(days=max(1, min(days, 3660)) - 1)
    except ValueError:
        raise Refused(400, "adm_bad_date") from None
    if start > end or (end - start).days > 3660:
        raise Refused(400, "adm_bad_period")
    return start, end


def report(days: int = 30, since: str = "", until: str = "") -> UsageReport:
    """The usage report of a period (the last ``days`` days by default)."""
    c = runtime.core()
    start, end = _period(days, since, until)
    return usage_report(c.db, start, end, base_of=lambda coll: base_of_collection(coll, c.settings),
                        words=analyze_query)  # the BM25 analyser: jieba words for Chinese, no question particles


def _pct(n: int, of: int) -> str:
    return f"{100 * n / of:.0f}%" if of else "—"


@router.get("/admin/usage")
async def usage(adm: Admin = Depends(admin), days: int = 30, since: str = "", until: str = ""):
    """GET /admin/usage[?days=N | since=&until=]: the figures of the period, charts and tables."""
    try:
        rep = await asyncio.to_thread(report, days, since, until)
    except Refused as err:
        return page(adm, "usage.html", "adm_nav_usage", active="usage", status=400, error=adm.t(err.key),
                    rep=None, periods=PERIODS, days=days)
    per_day = charts.columns([(d[5:], n) for d, n in rep.per_day], title=adm.t("adm_per_day"))
    thumbs = charts.bars([(adm.t("adm_thumbs_up"), rep.thumbs_up), (adm.t("adm_thumbs_down"), rep.thumbs_down)])
    query = f"since={rep.since}&until={rep.until}"
    return page(adm, "usage.html", "adm_nav_usage", active="usage", rep=rep, chart_per_day=per_day,
                chart_thumbs=thumbs, chart_persona=charts.bars([(p, n) for p, n, _ in rep.per_persona]),
                chart_base=charts.bars(rep.per_base), pct=_pct, periods=PERIODS, days=days if not since else 0,
                query=query)


def _rows(lang: str, rep: UsageReport, table: str) -> tuple[list[str], list[list]]:
    h = lambda *keys: [t(lang, k) for k in keys]  # noqa: E731
    if table == "per_day":
        return h("adm_day", "adm_questions"), [list(r) for r in rep.per_day]
    if table == "per_persona":
        return h("adm_persona", "adm_questions", "adm_search_only"), [list(r) for r in rep.per_persona]
    if table == "per_base":
        return h("adm_base", "adm_questions"), [list(r) for r in rep.per_base]
    if table == "per_user":
        return (h("adm_user_name", "adm_questions", "adm_thumbs_up", "adm_thumbs_down"),
                [list(r) for r in rep.per_user])
    if table == "unanswered":
        return (h("review_question", "adm_times_asked", "adm_no_passage", "adm_thumbs_down", "adm_persona",
                  "adm_other_wordings"),
                [[u.question, u.count, u.no_passage, u.thumbs_down, " ".join(u.personas),
                  " | ".join(w for w in u.examples if w != u.question)] for u in rep.unanswered])
    return h("adm_base", "adm_file", "adm_citations"), [list(r) for r in rep.cited]


@router.get("/admin/usage/csv/{table}")
async def usage_csv(table: str, adm: Admin = Depends(admin), days: int = 30, since: str = "", until: str = ""):
    """GET /admin/usage/csv/<table>: one table of the page as CSV (UTF-8 with BOM, for Excel)."""
    if table not in TABLES:
        raise Refused(404, "adm_not_found")
    rep = await asyncio.to_thread(report, days, since, until)
    header, rows = _rows(adm.lang, rep, table)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    name = f"kbchat-usage-{table}-{rep.since}-{rep.until}.csv"
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})

"""Review and dataset: the review queue with /review's actions (approve, edit, reject, skip; keyboard
shortcuts a, e, r, s), the dataset statistics of `kbchat shared stats` as charts, QA-sheet import with each
rejected row in a table, and the export download in every format with the CLI's filters."""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response

from kbchat.messages import MESSAGES, place_ref, reason_text, t
from kbchat.sharing.export import EXPORT_STATUSES, FORMATS, export_records
from kbchat.sharing.stats import BUCKETS, dataset_stats
from kbchat.sharing.store import utc_iso
from kbchat.ui import runtime
from kbchat.ui.access import source_check
from kbchat.ui.admin import charts
from kbchat.ui.admin.shell import Admin, Refused, admin, done, page

router = APIRouter()
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
PENDING_SHOWN = 50
MAX_PASSAGE = 400
SHEET_SUFFIXES = (".xlsx", ".csv", ".json", ".jsonl")
SHEET_MAX_BYTES = 50 * 1024 * 1024
# File name extension and media type of each export format.
EXPORT_FILES = {"alpaca": ("json", "application/json"), "openai": ("jsonl", "application/jsonl"),
                "sharegpt": ("json", "application/json"), "csv": ("csv", "text/csv; charset=utf-8"),
                "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")}
_SHEET_LINE = re.compile(r"^(?P<name>.*?): (?:row (?P<row>\d+): )?(?P<reason>.*)$", re.S)


def _skips(raw: str | None) -> list[str]:
    return [s for s in (raw or "").split(",") if _ID.fullmatch(s)][:500]


def _card(record, lang: str, may_see) -> dict:
    sources = []
    for i, s in enumerate(record.sources or [], 1):
        n = s.get("n") or i
        if not may_see(s):
            sources.append({"n": n, "withheld": True})
            continue
        page_no = s.get("page")
        where = place_ref(lang, int(page_no), s.get("page_label")) if isinstance(page_no, int) else ""
        text = str(s.get("text", ""))
        sources.append({"n": n, "file": str(s.get("file", "")), "where": where,
                        "text": text[:MAX_PASSAGE] + ("…" if len(text) > MAX_PASSAGE else "")})
    return {"r": record, "sources": sources,
            "origin": t(lang, f"review_origin_{record.origin}") if f"review_origin_{record.origin}" in MESSAGES["en"]
            else record.origin}


def _stats_charts(lang: str) -> dict:
    store = runtime.core().share_store
    s = dataset_stats(store.list(), store.duplicates_skipped())
    counts = lambda c: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))  # noqa: E731
    status = [(t(lang, f"review_{k}") if f"review_{k}" in MESSAGES["en"] else t(lang, "adm_status_pending")
               if k == "pending" else k, n) for k, n in counts(s.by_status)]
    origin = [(t(lang, f"review_origin_{k}") if f"review_origin_{k}" in MESSAGES["en"] else k, n)
              for k, n in counts(s.by_origin)]
    edges = [0, *BUCKETS]
    hist = [(f"{lo}-{hi - 1}", sum(lo <= x < hi for x in s.lengths)) for lo, hi in zip(edges, edges[1:])]
    hist.append((f"{BUCKETS[-1]}+", sum(x >= BUCKETS[-1] for x in s.lengths)))
    ordered = sorted(s.lengths)
    return {"stats": s, "chart_status": charts.bars(status), "chart_origin": charts.bars(origin),
            "chart_persona": charts.bars(counts(s.by_persona)), "chart_language": charts.bars(counts(s.by_language)),
            "chart_lengths": charts.columns(hist, label_every=1),
            "length_figures": {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1],
                               "total": sum(ordered)} if ordered else None}


def _queue(adm: Admin, skip: list[str], record_id: str | None) -> dict:
    c = runtime.core()
    store = c.share_store
    record = store.get(record_id) if record_id and _ID.fullmatch(record_id) else store.next_pending(skip)
    may_see = source_check(c, adm.name)
    pending = [r for r in store.list(status="pending")][:PENDING_SHOWN]
    personas = sorted({r.persona_id for r in store.list() if r.persona_id})
    return {"card": _card(record, adm.lang, may_see) if record else None, "pending_list": pending,
            "pending": store.count("pending"), "approved": store.count("approved"),
            "rejected": store.count("rejected"), "personas": personas, **_stats_charts(adm.lang)}


async def _render(adm: Admin, *, skip: list[str] = (), record_id: str | None = None, status: int = 200, **extra):
    values = await asyncio.to_thread(_queue, adm, list(skip), record_id)
    return page(adm, "review.html", "adm_nav_review", active="review", status=status, skip=",".join(skip),
                formats=FORMATS, export_statuses=EXPORT_STATUSES, **{**values, **extra})


@router.get("/admin/review")
async def review(adm: Admin = Depends(admin), skip: str = "", id: str = ""):
    """GET /admin/review[?skip=ids][&id=record]: the next pending pair (or one record), the pending list,
    the dataset's charts, import and export."""
    return await _render(adm, skip=_skips(skip), record_id=id or None)


def _back(adm: Admin, skip: str, notice: str):
    return done(adm, f"/admin/review?skip={','.join(_skips(skip))}" if _skips(skip) else "/admin/review", notice)


def _decide(adm: Admin, record_id: str, status: str) -> None:
    if not _ID.fullmatch(record_id) or runtime.core().share_store.review(record_id, status, adm.name) is None:
        raise Refused(404, "adm_not_found")
    adm.audit("review." + {"approved": "approve", "rejected": "reject"}[status], record_id)


@router.post("/admin/review/{record_id}/approve")
async def approve(record_id: str, adm: Admin = Depends(admin), skip: str = Form("")):
    """POST /admin/review/<id>/approve: the pair goes into exports."""
    await asyncio.to_thread(_decide, adm, record_id, "approved")
    return _back(adm, skip, "adm_approved")


@router.post("/admin/review/{record_id}/reject")
async def reject(record_id: str, adm: Admin = Depends(admin), skip: str = Form("")):
    """POST /admin/review/<id>/reject: the pair stays out of exports."""
    await asyncio.to_thread(_decide, adm, record_id, "rejected")
    return _back(adm, skip, "adm_rejected")


def _edit(adm: Admin, record_id: str, answer: str, then_approve: bool) -> None:
    store = runtime.core().share_store
    if not answer.strip():
        raise Refused(400, "adm_empty_answer")
    if not _ID.fullmatch(record_id) or store.edit(record_id, answer, adm.name) is None:
        raise Refused(404, "adm_not_found")
    adm.audit("review.edit", record_id)
    if then_approve:
        store.review(record_id, "approved", adm.name)
        adm.audit("review.approve", record_id)


@router.post("/admin/review/{record_id}/edit")
async def edit(record_id: str, adm: Admin = Depends(admin), answer: str = Form(""), approve: str = Form(""),
               skip: str = Form("")):
    """POST /admin/review/<id>/edit: the corrected answer (the original is kept); with approve=1 approved too."""
    try:
        await asyncio.to_thread(_edit, adm, record_id, answer, bool(approve))
    except Refused as err:
        if err.status == 404:
            raise
        return await _render(adm, skip=_skips(skip), record_id=record_id, status=400, error=adm.t(err.key))
    return _back(adm, skip, "adm_approved" if approve else "adm_edited")


def _export(adm: Admin, fmt: str, status: str, persona: str, since: str, with_context: bool,
            with_reasoning: bool, redact: bool) -> bytes:
    if fmt not in FORMATS or status not in EXPORT_STATUSES:
        raise Refused(400, "adm_bad_export")
    try:
        since_iso = utc_iso(since) if since.strip() else None
    except ValueError:
        raise Refused(400, "adm_bad_date") from None
    records = runtime.core().share_store.list(persona=persona or None, since=since_iso, status=status)
    adm.audit("export", f"console.{EXPORT_FILES[fmt][0]}",
              {k: v for k, v in {"format": fmt, "status": status, "persona": persona or None, "since": since_iso,
                                 "redact": redact or None, "records": len(records)}.items() if v is not None})
    return export_records(records, fmt, with_context=with_context, with_reasoning=with_reasoning, redact=redact)


@router.post("/admin/review/export")
async def export(adm: Admin = Depends(admin), format: str = Form("xlsx"), status: str = Form("approved"),
                 persona: str = Form(""), since: str = Form(""), with_context: str = Form(""),
                 with_reasoning: str = Form(""), redact: str = Form("")):
    """POST /admin/review/export: the dataset file, as `kbchat export` writes it with the same filters."""
    try:
        data = await asyncio.to_thread(_export, adm, format, status, persona, since, bool(with_context),
                                       bool(with_reasoning), bool(redact))
    except Refused as err:
        return await _render(adm, status=400, error=adm.t(err.key))
    ext, media = EXPORT_FILES[format]
    name = f"kbchat-{format}-{status}-{datetime.now(timezone.utc):%Y%m%d-%H%M}.{ext}"
    return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _sheet_rows(lang: str, lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        m = _SHEET_LINE.match(line)
        out.append({"row": m["row"] if m and m["row"] else "",
                    "reason": reason_text(lang, m["reason"]) if m else line})
    return out


def _import(adm: Admin, path: Path, name: str) -> dict:
    from kbchat.sharing.sheets import SheetError, import_sheet

    try:
        result = import_sheet(path, runtime.core().share_store, by=adm.name, name=name)
    except SheetError as err:
        adm.audit("sheet.import", name, {"imported": 0, "error": str(err)[:200]})
        return {"error": reason_text(adm.lang, str(err))}
    adm.audit("sheet.import", name, {"imported": len(result.added), "duplicates": result.duplicates,
                                     "rejected": len(result.sheet.problems)})
    return {"imported": {"name": name, "summary": t(adm.lang, "sheet_summary", name=name, added=len(result.added),
                                                     duplicates=result.duplicates,
                                                     rejected=len(result.sheet.problems)),
                         "rows": _sheet_rows(adm.lang, result.sheet.problems)}}


@router.post("/admin/review/import")
async def import_sheet_route(adm: Admin = Depends(admin), sheet: UploadFile = File(...)):
    """POST /admin/review/import: a QA sheet (.xlsx .csv .json .jsonl) as pending pairs; each rejected row
    is shown with its row number and reason."""
    name = Path((sheet.filename or "sheet").replace("\\", "/")).name[:200] or "sheet"
    if Path(name).suffix.lower() not in SHEET_SUFFIXES:
        return await _render(adm, status=400, error=adm.t("adm_sheet_types"))
    data = await sheet.read(SHEET_MAX_BYTES + 1)
    if len(data) > SHEET_MAX_BYTES:
        return await _render(adm, status=400, error=adm.t("too_large", mb=SHEET_MAX_BYTES // (1024 * 1024)))
    folder = runtime.core().settings.data_dir / "admin-uploads" / secrets.token_hex(8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sheet{Path(name).suffix.lower()}"
    try:
        path.write_bytes(data)
        result = await asyncio.to_thread(_import, adm, path, name)
    finally:
        path.unlink(missing_ok=True)
        folder.rmdir()
    return await _render(adm, status=400 if "error" in result else 200, **result)

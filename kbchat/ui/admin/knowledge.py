"""Knowledge: the bases (description, documents, passages, who may read and manage them), a base's
documents with who added them and when, uploads of several files with per-file progress that survives a
reload (kbchat.ui.admin.jobs), removing a document, creating a base. The same calls as /kb and `kbchat kb`."""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse

from kbchat.errors import KbchatError
from kbchat.knowledge import (ORIGIN_FOLDER, added_by_label, create_base, get_base, list_bases, read_description,
                              remove_document)
from kbchat.messages import error_text, t
from kbchat.records.access import EVERYONE
from kbchat.ui import runtime
from kbchat.ui.admin import jobs
from kbchat.ui.admin.shell import Admin, Refused, admin, done, page
from kbchat.ui.auth import CLIENT

router = APIRouter()
_BASE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_JOB = re.compile(r"[0-9a-f]{32}")
CHUNK = 1024 * 1024


def upload_limits() -> tuple[int, int]:
    """(bytes per file, files per upload): the chat's limits (.chainlit/config.toml), so the console takes
    what the chat takes."""
    from chainlit.config import config

    f = config.features.spontaneous_file_upload
    mb = int(getattr(f, "max_size_mb", 0) or 50) if f else 50
    n = int(getattr(f, "max_files", 0) or 10) if f else 10
    return mb * 1024 * 1024, n


def _overview() -> dict:
    c = runtime.core()
    acc = c.access.all_access()
    rows = []
    for kb in list_bases(c.settings):
        coll = c.store.collection(kb.collection)
        rows.append({"kb": kb, "docs": len(coll.documents()), "passages": len(coll), "access": acc.get(kb.name)})
    return {"bases": rows, "everyone": EVERYONE}


@router.get("/admin/knowledge")
async def knowledge(adm: Admin = Depends(admin)):
    """GET /admin/knowledge: every base with its description, documents, passages and access."""
    values = await asyncio.to_thread(_overview)
    for row in values["bases"]:
        row["description"] = read_description(row["kb"].folder, adm.lang)
    return page(adm, "knowledge.html", "adm_nav_knowledge", active="knowledge", **values)


def _create(adm: Admin, name: str, description: str) -> None:
    kb = create_base(runtime.core().settings, name.strip(), description)
    adm.audit("kb.create", kb.name, {"description": description} if description else None)


@router.post("/admin/knowledge/create")
async def create(adm: Admin = Depends(admin), name: str = Form(""), description: str = Form("")):
    """POST /admin/knowledge/create: a new base (its folder and README with the description)."""
    try:
        await asyncio.to_thread(_create, adm, name, description)
    except KbchatError as err:
        values = await asyncio.to_thread(_overview)
        return page(adm, "knowledge.html", "adm_nav_knowledge", active="knowledge", status=400,
                    error=error_text(adm.lang, err), **values)
    return done(adm, f"/admin/knowledge/{name.strip()}", "adm_base_created")


def _base(name: str):
    if not _BASE.fullmatch(name):
        raise Refused(404, "adm_not_found")
    try:
        return get_base(runtime.core().settings, name)
    except KbchatError:
        raise Refused(404, "adm_not_found") from None


def _base_page(name: str) -> dict:
    c = runtime.core()
    kb = _base(name)
    docs = sorted(c.store.collection(kb.collection).documents(), key=lambda d: d.added_at or "", reverse=True)
    groups = [g.name for g in c.access.list_groups()]
    acc = c.access.base_access(name)
    users = lambda ps: ", ".join(p.removeprefix("user:") for p in ps or () if p.startswith("user:"))  # noqa: E731
    return {"kb": kb, "docs": docs, "access": acc, "groups": groups, "read_users": users(acc.read),
            "manage_users": users(acc.manage),
            "jobs": jobs.jobs_of(name), "folder_origin": ORIGIN_FOLDER}


async def _render_base(adm: Admin, name: str, *, status: int = 200, **extra):
    values = await asyncio.to_thread(_base_page, name)
    max_bytes, max_files = upload_limits()
    return page(adm, "knowledge_base.html", "adm_base_title", active="knowledge", status=status,
                description=read_description(values["kb"].folder, adm.lang), added_by=added_by_label,
                max_mb=max_bytes // (1024 * 1024), max_files=max_files,
                job_states=[job_state(j, adm.lang) for j in values["jobs"]], **{**values, **extra})


@router.get("/admin/knowledge/{base}")
async def base_page(base: str, adm: Admin = Depends(admin)):
    """GET /admin/knowledge/<base>: its documents (who added them, when), access, uploads and their progress."""
    return await _render_base(adm, base)


def _principals(groups: list[str], users: str) -> list[str]:
    out = [f"group:{g}" for g in groups if g]
    out += [f"user:{u.strip().removeprefix('user:')}" for u in (users or "").split(",") if u.strip()]
    return list(dict.fromkeys(out))


def _set_access(adm: Admin, base: str, mode: str, read_groups: list[str], read_users: str,
                manage_groups: list[str], manage_users: str) -> None:
    _base(base)
    read = None if mode == "everyone" else [] if mode == "admins" else _principals(read_groups, read_users)
    if mode == "listed" and not read:
        raise Refused(400, "adm_read_list_empty")
    acc = runtime.core().access.set_base_access(base, read=read, manage=_principals(manage_groups, manage_users),
                                                by=adm.name)
    adm.audit("kb.access", base, {"read": acc.describe(), "manage": list(acc.manage)})


@router.post("/admin/knowledge/{base}/access")
async def set_access(base: str, adm: Admin = Depends(admin), mode: str = Form("everyone"),
                     read_groups: list[str] = Form([]), read_users: str = Form(""),
                     manage_groups: list[str] = Form([]), manage_users: str = Form("")):
    """POST /admin/knowledge/<base>/access: who may read (everyone, admins only, or the groups and users
    listed) and who may add and remove documents besides admins. Applies to the next question."""
    try:
        await asyncio.to_thread(_set_access, adm, base, mode, read_groups, read_users, manage_groups, manage_users)
    except Refused as err:
        if err.status == 404:
            raise
        return await _render_base(adm, base, status=400, error=adm.t(err.key))
    except KbchatError as err:
        return await _render_base(adm, base, status=400, error=error_text(adm.lang, err))
    return done(adm, f"/admin/knowledge/{base}")


def _remove(adm: Admin, base: str, key: str) -> None:
    c = runtime.core()
    _base(base)
    doc = remove_document(c.store, c.settings, base, key, lock=c.write_lock)
    adm.audit("kb.remove", base, {"document": doc.source, "key": doc.source_key})


@router.post("/admin/knowledge/{base}/remove")
async def remove(base: str, adm: Admin = Depends(admin), key: str = Form("")):
    """POST /admin/knowledge/<base>/remove: one document (not a file of the knowledge folder: that one goes
    when the file is deleted there)."""
    try:
        await asyncio.to_thread(_remove, adm, base, key)
    except KbchatError as err:
        return await _render_base(adm, base, status=400, error=error_text(adm.lang, err))
    return done(adm, f"/admin/knowledge/{base}", "adm_document_removed")


def _safe_name(raw: str | None) -> str:
    """The file's own name, without a path or control characters."""
    name = "".join(ch for ch in Path((raw or "").replace("\\", "/")).name if ch.isprintable()).strip()
    return name[:200] or "upload"


async def _save(files: list[UploadFile], folder: Path, max_bytes: int):
    """Write each upload to ``folder``; a file over the size limit is refused (and deleted), the others kept."""
    saved, refused = [], []
    folder.mkdir(parents=True, exist_ok=True)
    for i, up in enumerate(files):
        name = _safe_name(up.filename)
        target = folder / f"{i:03d}-{secrets.token_hex(4)}{Path(name).suffix.lower()}"
        size, over = 0, False
        with target.open("wb") as out:
            while chunk := await up.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    over = True
                    break
                out.write(chunk)
        if over:
            target.unlink(missing_ok=True)
            refused.append((name, "too_large", {"mb": max_bytes // (1024 * 1024)}))
        else:
            saved.append((name, target))
    return saved, refused


@router.post("/admin/knowledge/{base}/upload")
async def upload(base: str, adm: Admin = Depends(admin), files: list[UploadFile] = File(...)):
    """POST /admin/knowledge/<base>/upload: several files, added in the background by the one ingest
    routine (the chat's type and size checks); the base's page shows each file's progress."""
    await asyncio.to_thread(_base, base)
    max_bytes, max_files = upload_limits()
    files = [f for f in files if f.filename]
    if not files:
        return await _render_base(adm, base, status=400, error=adm.t("adm_no_files"))
    if len(files) > max_files:
        return await _render_base(adm, base, status=400, error=adm.t("adm_too_many_files", n=max_files))
    folder = runtime.core().settings.data_dir / "admin-uploads" / secrets.token_hex(8)
    saved, refused = await _save(files, folder, max_bytes)
    job = jobs.start(base, adm.name, CLIENT.get(), saved, refused, folder)
    return done(adm, f"/admin/knowledge/{base}?job={job.id}#uploads", "adm_upload_started")


def _plain(markdown: str) -> str:
    """A chat line (Markdown) as page text: no bold marks, no escapes."""
    return re.sub(r"\*\*|\\(?=[\\`*_\[\]()#+.!|-])", "", markdown)


def _line(lang: str, f: jobs.FileState, base: str) -> str:
    from kbchat.ui.uploads import outcome_line

    if f.refused is not None:
        return _plain(t(lang, "kb_not_added", name=f.name, base=base, reason=t(lang, f.refused[0], **f.refused[1])))
    if f.outcome is not None:
        return _plain(outcome_line(lang, f.outcome, base))
    if f.stage == "waiting":
        return t(lang, "adm_waiting")
    return _plain(t(lang, f.stage, name=f.name, done=f.pages_done if f.stage == "reading" else f.embedded,
             page=f.pages_done, total=f.pages_total if f.stage != "embedding" else f.passages))


def job_state(job: jobs.Job, lang: str) -> dict:
    """A job as the page draws it (also its JSON for polling)."""
    with job.lock:
        return {"id": job.id, "running": job.running, "by": job.by,
                "files": [{"name": f.name, "stage": f.stage, "pages_done": f.pages_done, "pages_total": f.pages_total,
                           "ocr_pages": f.ocr_pages, "embedded": f.embedded, "passages": f.passages,
                           "line": _line(lang, f, job.base)} for f in job.files]}


@router.get("/admin/jobs/{job_id}")
async def job(job_id: str, adm: Admin = Depends(admin)):
    """GET /admin/jobs/<id>: one upload job's files and progress (JSON, polled by the base's page)."""
    found = jobs.get(job_id) if _JOB.fullmatch(job_id) else None
    if found is None:
        raise Refused(404, "adm_not_found")
    return JSONResponse(job_state(found, adm.lang))

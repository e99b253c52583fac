"""The REST API under ``/api/v1`` (OpenAPI at ``/api/docs``): search, knowledge bases and their documents
(uploads go through the chat's checks and ingest routine, with a progress job), personas, Share of an API
answer, and the shared Q&A dataset for admins (list, review, sheet import with its row errors, export in
every format with the CLI's filters), usage counts for admins. Each call acts as the key's user: only what
they may read is searched or returned; every change is in the audit log."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kbchat.errors import KbchatError
from kbchat.knowledge import base_names, collection_name, readable_bases
from kbchat.sharing.export import EXPORT_STATUSES, FORMATS
from kbchat.ui import access, asking, runtime
from kbchat.ui.api.gate import ApiError, Caller, audit, needs
from kbchat.ui.api.openai_compat import citation

KNOWLEDGE_ADMIN = needs("knowledge", admins=True)  # checked before the body is read
DATASET_ADMIN = needs("dataset", admins=True)
ADMIN = needs(None, admins=True)
router = APIRouter()
SEARCH_MAX_K = 50


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- search


class SearchRequest(Strict):
    question: str = Field(min_length=1, max_length=8000)
    bases: list[str] | None = Field(
        None, description="Knowledge bases to search (default: every one you may read)"
    )
    k: int = Field(5, ge=1, le=SEARCH_MAX_K)


@router.post("/search", tags=["search"], summary="Passages for a question from the bases you may read")
async def search(body: SearchRequest, request: Request, who: Caller = Depends(needs("search"))):
    c = runtime.core()

    def run():
        from kbchat.search.retrieve import search as do_search

        known = base_names(c.settings)
        wanted = body.bases if body.bases is not None else known
        # an unknown base and one the user may not read look the same: nothing says it exists
        readable, _ = readable_bases(c.access, who.reader, [b for b in wanted if b in known])
        colls = [c.store.collection(collection_name(b, c.settings)) for b in readable]
        hits = (
            do_search(
                colls,
                c.embedder,
                body.question,
                k=body.k,
                candidate_k=c.settings.candidate_k,
                reranker=c.reranker,
            )
            if colls
            else []
        )
        return readable, hits

    try:
        readable, hits = await asyncio.to_thread(run)
    except KbchatError as err:
        raise ApiError(503, f"search failed: {err}", code="search_failed", type_="api_error") from None
    return {
        "bases": readable,
        "hits": [
            dict(citation(request, i, h), score=round(float(h.score), 6)) for i, h in enumerate(hits, 1)
        ],
    }


# ---------------------------------------------------------------- knowledge bases


@router.get("/bases", tags=["knowledge"], summary="The knowledge bases you may read")
async def list_bases(who: Caller = Depends(needs("search"))):
    from kbchat.knowledge import list_bases as all_bases

    c = runtime.core()

    def run():
        bases = all_bases(c.settings)
        ok = set(c.access.readable(who.name, who.is_admin, [b.name for b in bases]))
        return [
            {
                "name": b.name,
                "description": b.description,
                "manage": c.access.may_manage(who.name, who.is_admin, b.name),
            }
            for b in bases
            if b.name in ok
        ]

    return {"bases": await asyncio.to_thread(run)}


class NewBase(Strict):
    name: str = Field(min_length=1, max_length=40)
    description: str = Field("", max_length=2000)


@router.post("/bases", tags=["knowledge"], status_code=201, summary="Create a knowledge base (admins)")
async def create_base(body: NewBase, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    from kbchat.knowledge import create_base as make

    try:
        kb = await asyncio.to_thread(make, runtime.core().settings, body.name, body.description)
    except KbchatError as err:
        raise ApiError(400, str(err), code="invalid_value", param="name") from None
    await audit(who, "kb.create", kb.name)
    return {"name": kb.name, "description": kb.description}


def _managed(who: Caller, base: str) -> None:
    """404 unless ``base`` exists and the key's user may read and manage it (its existence stays unsaid)."""
    c = runtime.core()
    if (
        base not in base_names(c.settings)
        or not c.access.may_read(who.name, who.is_admin, base)
        or not c.access.may_manage(who.name, who.is_admin, base)
    ):
        raise ApiError(404, f"no knowledge base {base!r} you may manage", code="not_found")


@router.get("/bases/{base}/documents", tags=["knowledge"], summary="Documents of a base you manage")
async def list_documents(base: str, who: Caller = Depends(needs("knowledge"))):
    c = runtime.core()

    def run():
        _managed(who, base)
        return [
            {
                "name": d.source,
                "key": d.source_key,
                "doc_hash": d.doc_hash,
                "pages": d.pages,
                "passages": d.passages,
                "origin": d.origin,
                "added_at": d.added_at,
                "added_by": d.added_by,
            }
            for d in c.store.collection(collection_name(base, c.settings)).documents()
        ]

    return {"documents": await asyncio.to_thread(run)}


JOBS: dict[str, dict] = {}  # upload jobs of this process: id -> status (progress, outcome)
_JOBS_KEPT = 500


@router.post(
    "/bases/{base}/documents",
    tags=["knowledge"],
    status_code=202,
    summary="Upload a document (multipart field `file`); poll the returned job for its progress",
)
async def upload_document(base: str, request: Request, who: Caller = Depends(needs("knowledge"))):
    from kbchat.documents.reader import SUPPORTED_TYPES, is_supported

    await asyncio.to_thread(_managed, who, base)
    try:
        form = await request.form()
    except Exception as err:
        raise ApiError(
            400, f"expected a multipart form with a `file` field: {err}", code="invalid_value"
        ) from None
    up = form.get("file")
    if up is None or isinstance(up, str) or not getattr(up, "filename", None):
        raise ApiError(
            400, "expected a multipart form with a `file` field", code="invalid_value", param="file"
        )
    name = Path(up.filename).name
    if not is_supported(name):
        raise ApiError(
            400,
            f"{name}: only {', '.join(SUPPORTED_TYPES)} files can be indexed",
            code="unsupported_type",
            param="file",
        )
    folder = Path(tempfile.mkdtemp(prefix="kbchat-api-"))
    path = folder / name
    with open(path, "wb") as fh:
        await asyncio.to_thread(shutil.copyfileobj, up.file, fh)
    job_id = uuid.uuid4().hex
    job = {
        "id": job_id,
        "base": base,
        "name": name,
        "user": who.name,
        "status": "running",
        "stage": "reading",
        "done": 0,
        "total": None,
        "result": None,
        "error": None,
    }
    while len(JOBS) >= _JOBS_KEPT:
        JOBS.pop(next(iter(JOBS)))
    JOBS[job_id] = job
    threading.Thread(
        target=_ingest, args=(job, path, who), name=f"api-upload-{job_id[:8]}", daemon=True
    ).start()
    await audit(who, "kb.add", base, {"file": name, "job": job_id})
    return job


def _ingest(job: dict, path: Path, who: Caller) -> None:
    from kbchat.knowledge import add_document

    c = runtime.core()

    def step(stage):
        def on(done, total):
            job.update(stage=stage, done=done, total=total)

        return on

    try:
        doc, result = add_document(
            c.store,
            c.settings,
            job["base"],
            path,
            name=job["name"],
            added_by=f"api:{who.name}",
            lock=c.write_lock,
            on_page=step("reading"),
            on_ocr_page=step("reading_ocr"),
            on_embed=step("embedding"),
        )
        job.update(
            status="done",
            stage="done",
            result={"status": result.status, "doc_hash": doc.doc_hash, "pages": doc.pages},
        )
    except KbchatError as err:
        job.update(status="failed", error=str(err))
    except Exception as err:
        runtime.log.exception("API upload of %s failed", job["name"])
        job.update(status="failed", error=f"internal error ({type(err).__name__})")
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


@router.get("/jobs/{job_id}", tags=["knowledge"], summary="Progress and outcome of an upload")
async def get_job(job_id: str, who: Caller = Depends(needs("knowledge"))):
    job = JOBS.get(job_id)
    if job is None or (job["user"] != who.name and not who.is_admin):
        raise ApiError(
            404, "no such job (jobs live in the app process that took the upload)", code="not_found"
        )
    return job


@router.delete("/bases/{base}/documents/{which}", tags=["knowledge"], summary="Remove a document")
async def remove_document(base: str, which: str, who: Caller = Depends(needs("knowledge"))):
    from kbchat.knowledge import remove_document as remove

    c = runtime.core()
    await asyncio.to_thread(_managed, who, base)
    try:
        doc = await asyncio.to_thread(remove, c.store, c.settings, base, which, lock=c.write_lock)
    except KbchatError as err:
        raise ApiError(
            404 if getattr(err, "key", "") == "kb_no_document" else 409,
            str(err),
            code=err.key or "invalid_value",
        ) from None
    await audit(who, "kb.remove", base, {"file": doc.source})
    return {"removed": doc.source, "key": doc.source_key}


# ---------------------------------------------------------------- personas


def _persona_of(who: Caller, persona_id: str):
    seen = access.visible_personas(runtime.core(), who.name)
    found = next((p for p in seen if p.id == persona_id), None)
    if found is None:
        raise ApiError(404, f"no persona {persona_id!r} you may use", code="not_found")
    return found


@router.get("/personas", tags=["personas"], summary="The personas you may use")
async def list_personas(who: Caller = Depends(needs("chat"))):
    seen = await asyncio.to_thread(access.visible_personas, runtime.core(), who.name)
    return {"personas": [p.model_dump(mode="json", exclude_none=True) for p in seen]}


@router.get(
    "/personas/{persona_id}", tags=["personas"], summary="One persona, as JSON or YAML (?format=yaml)"
)
async def get_persona(
    persona_id: str, format: Literal["json", "yaml"] = "json", who: Caller = Depends(needs("chat"))
):
    p = await asyncio.to_thread(_persona_of, who, persona_id)
    data = p.model_dump(mode="json", exclude_none=True)
    if format == "yaml":
        import yaml

        return Response(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False), media_type="application/yaml"
        )
    return data


# ---------------------------------------------------------------- sharing and the dataset


@router.post(
    "/answers/{answer_id}/share",
    tags=["dataset"],
    summary="Share one of your API answers for review (your consent, per answer)",
)
async def share_answer(answer_id: str, who: Caller = Depends(needs("chat"))):
    c = runtime.core()

    def run():
        found = c.history.answer(answer_id)
        if found is None or c.history.thread_owner(found[0]) != who.name or found[1].get("search_only"):
            raise ApiError(
                404,
                "no answer of yours with this id (search-only answers cannot be shared)",
                code="not_found",
            )
        return c.share_store.share(asking.share_record(c, answer_id, found[1], who.name))

    rec = await asyncio.to_thread(run)
    await audit(who, "share", answer_id, {"record": rec.id})
    return {"id": rec.id, "status": rec.status, "answer_id": answer_id}


@router.get("/shared", tags=["dataset"], summary="Shared Q&A records (admins)")
async def list_shared(
    status: Literal["pending", "approved", "rejected", "all"] = "all",
    persona: str | None = None,
    since: str | None = None,
    who: Caller = Depends(DATASET_ADMIN),
):
    records = await asyncio.to_thread(_records, who, persona, since, status)
    return {"records": [r.model_dump(mode="json") for r in records]}


def _records(who: Caller, persona: str | None, since: str | None, status: str) -> list:
    """The records of these filters whose cited passages the key's user may all read (as `export --as`)."""
    from kbchat.cli.shared import parse_since

    c = runtime.core()
    try:
        when = parse_since(since)
    except Exception as err:
        raise ApiError(
            400, f"since: {getattr(err, 'message', err)}", code="invalid_value", param="since"
        ) from None
    ok = access.source_check(c, who.name)
    return [r for r in c.share_store.list(persona, when, status=status) if all(ok(s) for s in r.sources)]


class Decision(Strict):
    status: Literal["approved", "rejected", "pending"]
    answer: str | None = Field(
        None, max_length=20000, description="An edited answer kept beside the original"
    )


@router.post(
    "/shared/{record_id}/review", tags=["dataset"], summary="Approve, reject or edit a record (admins)"
)
async def review(record_id: str, body: Decision, who: Caller = Depends(DATASET_ADMIN)):
    store = runtime.core().share_store

    def run():
        if body.answer is not None and store.edit(record_id, body.answer, who.name) is None:
            return None
        return store.review(record_id, body.status, who.name)

    rec = await asyncio.to_thread(run)
    if rec is None:
        raise ApiError(404, f"no shared record {record_id!r}", code="not_found")
    await audit(who, f"review.{body.status}", record_id, {"edited": body.answer is not None})
    return {"id": rec.id, "status": rec.status}


@router.post("/shared/import", tags=["dataset"], summary="Import a QA sheet (multipart `file`; admins)")
async def import_sheet(request: Request, persona: str = "", who: Caller = Depends(DATASET_ADMIN)):
    from kbchat.sharing.sheets import import_sheet as do_import

    form = await request.form()
    up = form.get("file")
    if up is None or isinstance(up, str) or not getattr(up, "filename", None):
        raise ApiError(
            400, "expected a multipart form with a `file` field", code="invalid_value", param="file"
        )
    name = Path(up.filename).name
    folder = Path(tempfile.mkdtemp(prefix="kbchat-sheet-"))
    try:
        path = folder / name
        path.write_bytes(await up.read())
        c = runtime.core()
        p = c.personas.get(persona) if persona else None
        try:
            result = await asyncio.to_thread(
                do_import,
                path,
                c.share_store,
                by=who.name,
                persona=persona,
                persona_prompt=p.system_prompt() if p else "",
                source=name,
                name=name,
            )
        except KbchatError as err:
            raise ApiError(400, str(err), code="invalid_sheet", param="file") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    await audit(who, "import", name, {"added": len(result.added), "rejected": len(result.sheet.problems)})
    return {
        "summary": result.summary(),
        "imported": len(result.added),
        "duplicates": result.duplicates,
        "row_errors": list(result.sheet.problems),
        "ids": [r.id for r in result.added],
    }


_MEDIA = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@router.get(
    "/shared/export", tags=["dataset"], summary="Export the dataset (admins; the CLI's formats and filters)"
)
async def export(
    format: str = Query("openai", description=", ".join(FORMATS)),
    status: str = "approved",
    persona: str | None = None,
    since: str | None = None,
    with_context: bool = False,
    with_reasoning: bool = False,
    redact: bool = False,
    who: Caller = Depends(DATASET_ADMIN),
):
    from kbchat.sharing.export import export_records

    if format not in FORMATS:
        raise ApiError(
            400, f"format must be one of {', '.join(FORMATS)}", code="invalid_value", param="format"
        )
    if status not in EXPORT_STATUSES:
        raise ApiError(
            400, f"status must be one of {', '.join(EXPORT_STATUSES)}", code="invalid_value", param="status"
        )
    records = await asyncio.to_thread(_records, who, persona, since, status)
    data = await asyncio.to_thread(
        export_records,
        records,
        format,
        with_context=with_context,
        with_reasoning=with_reasoning,
        redact=redact,
    )
    await audit(who, "export", "api", {"format": format, "status": status, "records": len(records)})
    ext = {"alpaca": "json", "openai": "jsonl", "sharegpt": "json"}.get(format, format)
    return Response(
        data,
        media_type=_MEDIA.get(format, "application/json"),
        headers={"Content-Disposition": f'attachment; filename="kbchat-{format}.{ext}"'},
    )


# ---------------------------------------------------------------- usage


@router.get("/usage", tags=["admin"], summary="Answers per user and channel on a day, keys, dataset (admins)")
async def usage(day: str | None = None, who: Caller = Depends(ADMIN)):
    from collections import Counter
    from datetime import date, datetime, timedelta, timezone

    from kbchat.records.keys import ApiKeys

    c = runtime.core()
    try:
        start = date.fromisoformat(day) if day else datetime.now(timezone.utc).date()
    except ValueError:
        raise ApiError(400, "day: a date like 2026-12-05", code="invalid_value", param="day") from None

    def run():
        records = c.history.answer_records(start.isoformat(), (start + timedelta(days=1)).isoformat())
        keys = ApiKeys(c.db).list()
        return {
            "day": start.isoformat(),
            "answers": len(records),
            "by_user": dict(Counter(r.get("user") or "-" for r in records)),
            "by_channel": dict(Counter(r.get("via") or "chat" for r in records)),
            "search_only": sum(bool(r.get("search_only")) for r in records),
            "quota_counts": c.access.questions_on(start.isoformat()),
            "keys": {"active": sum(k.state() == "active" for k in keys), "total": len(keys)},
            "shared": {s: c.share_store.count(s) for s in ("pending", "approved", "rejected")},
        }

    return await asyncio.to_thread(run)


__all__ = ["JOBS", "router"]

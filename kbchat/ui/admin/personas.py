"""The console's Personas page: the persona database (kbchat.records.personas) listed with the broken ones
and why, an editor with every field a persona has (validated by the YAML loader's own validator: an invalid
field shows the loader's message beside it and nothing is saved), versions with restore, YAML import and
export, prompt-library CSV import as drafts, and a preview that opens a chat with the persona.
Every change is written to the audit log by the records layer, in the same transaction."""

from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from kbchat.errors import KbchatError
from kbchat.knowledge import base_names
from kbchat.personas import (
    Persona,
    PersonaInvalid,
    dump_persona,
    parse_persona_yaml,
    personas_from_prompt_csv,
)
from kbchat.records.personas import DRAFT, PUBLISHED, PersonaError, PersonaRecords
from kbchat.ui import runtime
from kbchat.ui.admin.shell import Admin, Refused, admin, done, page
from kbchat.ui.auth import CLIENT

router = APIRouter()

LANG_TAGS = ["en", "zh-TW", "zh-CN", "ja", "ko"]
ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
MAX_YAML_BYTES = 1024 * 1024
# Fields the editor always shows but a YAML file may leave out: left out again when they hold the default.
DEFAULTS: dict[str, Any] = {"default": False, "examples": [], "retrieval": {"k": 6, "use_shared_knowledge": True},
                            "knowledge": ["default"], "temperature": 0.2, "reasoning_default": False,
                            "visible_to": []}
PREVIEWS: dict[str, tuple[str, str]] = {}   # one-time preview token -> (admin, persona id): see handlers


def _records() -> PersonaRecords:
    return runtime.core().persona_cache.records


def _bases() -> list[str]:
    return base_names(runtime.core().settings)


def _groups() -> list[str]:
    return [g.name for g in runtime.core().access.list_groups()]


# ---------------------------------------------------------------- the list


@router.get("/admin/personas")
async def personas_page(adm: Admin = Depends(admin)):
    """Every persona: name, status (published, draft or broken with the reason), bases, groups, version."""
    rows, catalog, removed = await asyncio.to_thread(_listing)
    return page(adm, "personas.html", "adm_nav_personas", active="personas", rows=rows, broken=catalog.broken,
                removed=removed)


def _listing():
    records = _records()
    return records.records(), records.catalog(_bases()), records.removed()


# ---------------------------------------------------------------- the editor


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _number(value: str, kind):
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value  # the validator names the field and says what it expects


def _prune(new: dict, old: dict) -> dict:
    """``new`` without the defaulted fields the stored persona did not set (so an unchanged save is no change)."""
    out = dict(new)
    for key, default in DEFAULTS.items():
        if key in old or key not in out:
            continue
        if isinstance(default, dict) and isinstance(out[key], dict):
            kept = {k: v for k, v in out[key].items() if default.get(k) != v}
            if kept:
                out[key] = kept
            else:
                out.pop(key)
        elif out[key] == default:
            out.pop(key)
    if "llm" in out and out["llm"] is None:
        out.pop("llm")
    return out


def form_to_data(form, old: dict) -> dict:
    """The persona's fields from the editor's form, shaped as its YAML file."""
    langs = [*LANG_TAGS, *[k for k in old.get("name", {}) if k not in LANG_TAGS]]

    def per_lang(prefix: str) -> dict:
        return {lang: form.get(f"{prefix}.{lang}", "").strip() for lang in langs if form.get(f"{prefix}.{lang}", "").strip()}

    examples = []
    i = 0
    while f"ex_user_{i}" in form:
        user, assistant = form.get(f"ex_user_{i}", "").strip(), form.get(f"ex_assistant_{i}", "").strip()
        if user or assistant:
            examples.append({"user": user, "assistant": assistant})
        i += 1
    starters = {}
    for lang in langs:
        items = []
        for line in _lines(form.get(f"starters.{lang}", "")):
            label, _, message = line.partition("|")
            items.append({"label": label.strip(), "message": message.strip()})
        if items or lang == "en":
            starters[lang] = items
    llm = None
    if any(form.get(k, "").strip() for k in ("llm_model", "llm_base_url", "llm_api_key_env")):
        llm = {"model": form.get("llm_model", "").strip()}
        for key, field in (("llm_base_url", "base_url"), ("llm_api_key_env", "api_key_env")):
            if form.get(key, "").strip():
                llm[field] = form.get(key, "").strip()
    data = {
        "id": form.get("id", "").strip(),
        "default": form.get("default") == "on",
        "icon": form.get("icon", "").strip(),
        "name": per_lang("name"),
        "description": per_lang("description"),
        "prompt": {"situation": form.get("situation", ""), "task": form.get("task", ""),
                   "constraints": _lines(form.get("constraints", ""))},
        "examples": examples,
        "starters": starters,
        "retrieval": {"k": _number(form.get("k", ""), int),
                      "use_shared_knowledge": form.get("use_shared_knowledge") == "on"},
        "knowledge": form.getlist("knowledge"),
        "temperature": _number(form.get("temperature", ""), float),
        "reasoning_default": form.get("reasoning_default") == "on",
        "visible_to": form.getlist("visible_to"),
        "llm": llm,
    }
    if not data["prompt"]["constraints"] and "constraints" not in old.get("prompt", {}):
        data["prompt"].pop("constraints")
    return _prune(data, old)


def _editor(adm: Admin, *, data: dict, version: int, status: str, is_new: bool, problems: dict | None = None,
            error: str | None = None, http_status: int = 200):
    records = _records()
    pid = data.get("id") or ""
    versions = [] if is_new else records.versions(pid)
    bases = _bases()
    groups = _groups()
    return page(adm, "persona_edit.html", "pdb_edit_title" if not is_new else "pdb_new_title", active="personas",
                status=http_status, d=data, version=version, pstatus=status, is_new=is_new,
                problems=problems or {}, error=error, versions=versions,
                plangs=[*LANG_TAGS, *[k for k in (data.get("name") or {}) if k not in LANG_TAGS]],
                bases=sorted(set(bases) | set(data.get("knowledge") or [])), known_bases=bases,
                groups=sorted(set(groups) | set(data.get("visible_to") or [])), pid=pid)


@router.get("/admin/personas/new")
async def new_persona(adm: Admin = Depends(admin)):
    """An empty editor (a new persona starts as a draft)."""
    data = {"icon": "/public/personas/general.svg", "name": {}, "description": {}, "prompt": {}, "starters": {}}
    return await asyncio.to_thread(_editor, adm, data=data, version=0, status=DRAFT, is_new=True)


@router.get("/admin/personas/edit/{pid}")
async def edit_persona(pid: str, adm: Admin = Depends(admin)):
    """The editor of one persona, with its versions."""
    rec = await asyncio.to_thread(_existing, pid)
    return await asyncio.to_thread(_editor, adm, data=rec.data, version=rec.version, status=rec.status, is_new=False)


def _existing(pid: str):
    import re

    rec = _records().get(pid) if re.match(ID_PATTERN, pid or "") else None
    if rec is None:
        raise Refused(404, "adm_not_found")
    return rec


@router.post("/admin/personas/save")
async def save_persona(request: Request, adm: Admin = Depends(admin)):
    """Save the editor's persona: validated as a YAML file is (its bases must exist); on a problem the
    editor comes back with the loader's message beside each field and nothing is saved."""
    form = await request.form()
    is_new = form.get("is_new") == "1"
    version = _number(form.get("version", "0"), int)
    status = form.get("status") if form.get("status") in (DRAFT, PUBLISHED) else DRAFT

    def save():
        records = _records()
        old = {} if is_new else (records.get(form.get("id", "")) or None)
        if not is_new and old is None:
            raise Refused(404, "adm_not_found")
        data = form_to_data(form, {} if is_new else old.data)
        if is_new and records.get(data.get("id", "")) is not None:
            return data, {"id": f"field 'id': '{data['id']}' is already used by another persona"}, None
        try:
            records.save(data, by=adm.name, status=status, bases=_bases(),
                         expected_version=0 if is_new else int(version) if isinstance(version, int) else None,
                         address=CLIENT.get(), via="console")
        except PersonaInvalid as err:
            return data, err.by_field(), None
        except PersonaError as err:
            return data, {}, str(err)
        return data, None, None

    data, problems, error = await asyncio.to_thread(save)
    if problems is None and error is None:
        return done(adm, f"/admin/personas/edit/{data['id']}")
    return await asyncio.to_thread(_editor, adm, data=data, version=version if isinstance(version, int) else 0,
                                   status=status, is_new=is_new, problems=problems,
                                   error=error or adm.t("pdb_not_saved"), http_status=400)


async def _change(adm: Admin, pid: str, fn) -> Response:
    def run():
        _existing_or_versions(pid)
        try:
            fn(_records())
        except KbchatError as err:
            return str(err)
        return None

    problem = await asyncio.to_thread(run)
    if problem:
        return await _list_with_error(adm, problem)
    return done(adm, f"/admin/personas/edit/{pid}" if await asyncio.to_thread(_records().get, pid)
                else "/admin/personas")


def _existing_or_versions(pid: str) -> None:
    import re

    if not re.match(ID_PATTERN, pid or "") or not _records().versions(pid):
        raise Refused(404, "adm_not_found")


async def _list_with_error(adm: Admin, problem: str):
    rows, catalog, removed = await asyncio.to_thread(_listing)
    return page(adm, "personas.html", "adm_nav_personas", active="personas", rows=rows, broken=catalog.broken,
                removed=removed, error=problem, status=400)


@router.post("/admin/personas/edit/{pid}/restore")
async def restore_persona(pid: str, request: Request, adm: Admin = Depends(admin)):
    """Make an earlier version current again."""
    version = _number((await request.form()).get("version", ""), int)
    if not isinstance(version, int):
        raise Refused(400, "adm_not_found")
    return await _change(adm, pid, lambda r: r.restore(pid, version, by=adm.name, address=CLIENT.get(), via="console"))


@router.post("/admin/personas/edit/{pid}/status")
async def set_status(pid: str, request: Request, adm: Admin = Depends(admin)):
    """Publish a draft, or take a persona back to draft."""
    status = (await request.form()).get("status")
    if status not in (DRAFT, PUBLISHED):
        raise Refused(400, "adm_not_found")
    return await _change(adm, pid, lambda r: r.set_status(pid, status, by=adm.name, address=CLIENT.get(), via="console"))


@router.post("/admin/personas/edit/{pid}/delete")
async def delete_persona(pid: str, adm: Admin = Depends(admin)):
    """Remove a persona (its versions stay: restore brings it back)."""
    return await _change(adm, pid, lambda r: r.delete(pid, by=adm.name, address=CLIENT.get(), via="console"))


# ---------------------------------------------------------------- import and export


async def _uploads(request: Request, suffixes: tuple[str, ...], limit: int) -> list[tuple[str, bytes]]:
    form = await request.form()
    out = []
    for f in form.getlist("files"):
        name = getattr(f, "filename", "") or ""
        if not name:
            continue
        if not name.lower().endswith(suffixes):
            raise KbchatError(f"{name}: not a {' or '.join(suffixes)} file")
        data = await f.read(limit + 1)
        if len(data) > limit:
            raise KbchatError(f"{name}: larger than {limit // 1024} KB")
        out.append((name, data))
    if not out:
        raise KbchatError("no file chosen")
    return out


@router.post("/admin/personas/import")
async def import_yaml(request: Request, adm: Admin = Depends(admin)):
    """Import persona YAML files (all or nothing: a bad file imports none, with the loader's line)."""
    try:
        files = await _uploads(request, (".yaml", ".yml"), MAX_YAML_BYTES)
    except KbchatError as err:
        return await _list_with_error(adm, str(err))

    def run():
        found: list[Persona] = []
        problems = []
        for name, data in files:
            try:
                found.append(parse_persona_yaml(data.decode("utf-8"), name))
            except UnicodeDecodeError:
                problems.append(f"{name}: not a UTF-8 text file")
            except KbchatError as err:
                problems.append(str(err))
        if problems:
            return "; ".join(problems)
        try:
            _records().import_personas(found, by=adm.name, address=CLIENT.get(), via="console")
        except KbchatError as err:
            return str(err)
        return None

    problem = await asyncio.to_thread(run)
    return await _list_with_error(adm, problem) if problem else done(adm, "/admin/personas", "adm_saved")


@router.post("/admin/personas/import-csv")
async def import_csv(request: Request, adm: Admin = Depends(admin)):
    """Import a prompt library (act, prompt CSV) as draft personas; rows left out are listed."""
    from kbchat.personas import PROMPT_CSV_MAX_BYTES

    try:
        files = await _uploads(request, (".csv",), PROMPT_CSV_MAX_BYTES)
    except KbchatError as err:
        return await _list_with_error(adm, str(err))

    def run():
        records = _records()
        taken = {r.id for r in records.records()}
        drafts, skipped = [], []
        for name, data in files:
            got, rows = personas_from_prompt_csv(data, name, taken)
            drafts += got
            skipped += rows
            taken |= {p.id for p in got}
        records.import_personas(drafts, by=adm.name, status=DRAFT, address=CLIENT.get(), via="console")
        return len(drafts), skipped

    try:
        n, skipped = await asyncio.to_thread(run)
    except KbchatError as err:
        return await _list_with_error(adm, str(err))
    if skipped:
        return await _list_with_error(adm, adm.t("pdb_csv_partly", n=n, rows="; ".join(skipped[:20])))
    return done(adm, "/admin/personas", "adm_saved")


@router.get("/admin/personas/export.zip")
async def export_zip(adm: Admin = Depends(admin)):
    """Every persona as <id>.yaml in one zip file (drafts too), ready for `kbchat personas import`."""
    def build() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for r in _records().records():
                if r.persona is not None:
                    z.writestr(f"personas/{r.id}.yaml", dump_persona(r.persona))
        return buf.getvalue()

    data = await asyncio.to_thread(build)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="personas.zip"'})


@router.get("/admin/personas/edit/{pid}/yaml")
async def export_one(pid: str, adm: Admin = Depends(admin)):
    """One persona as its YAML file."""
    rec = await asyncio.to_thread(_existing, pid)
    if rec.persona is None:
        raise Refused(404, "adm_not_found")
    return Response(dump_persona(rec.persona), media_type="application/yaml; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{pid}.yaml"'})


# ---------------------------------------------------------------- preview


@router.get("/admin/personas/preview/{pid}")
async def preview(pid: str, adm: Admin = Depends(admin)):
    """Open a chat with this persona (a draft too, for this admin): a one-time token in a cookie that the
    chat's next start takes (kbchat.ui.handlers), then the chat."""
    import secrets

    await asyncio.to_thread(_existing, pid)
    token = secrets.token_urlsafe(16)
    PREVIEWS[token] = (adm.name, pid)
    while len(PREVIEWS) > 200:  # tokens never taken (a tab closed) do not pile up
        PREVIEWS.pop(next(iter(PREVIEWS)))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie("kbchat_preview", token, max_age=600, httponly=True, samesite="lax", path="/")
    return response


def take_preview(cookie_header: str, user: str | None) -> str | None:
    """The persona a chat of ``user`` previews (once), from the Cookie header of its socket; None otherwise."""
    from http.cookies import SimpleCookie

    try:
        jar = SimpleCookie(cookie_header or "")
    except Exception:
        return None
    morsel = jar.get("kbchat_preview")
    if morsel is None or morsel.value not in PREVIEWS:
        return None
    who, pid = PREVIEWS[morsel.value]
    if who != user:
        return None
    PREVIEWS.pop(morsel.value, None)
    return pid

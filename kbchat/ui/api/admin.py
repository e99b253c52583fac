"""Admins' REST routes (``/api/v1``, key scope ``knowledge``): who may read and manage each knowledge base,
and personas written or deleted as YAML or JSON, validated by the same loader as at start-up (the whole set:
fields, one default, known bases) before the file is written. A persona change applies at once in the app
process that took it; other replicas see it after their restart (they load personas once per process)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from kbchat.errors import KbchatError
from kbchat.knowledge import base_names, check_base_name
from kbchat.personas import load_personas
from kbchat.ui import runtime
from kbchat.ui.api.gate import ApiError, Caller, audit, needs

KNOWLEDGE_ADMIN = needs("knowledge", admins=True)  # the key's scope and an admin, checked before the body
router = APIRouter(tags=["admin"])


# ---------------------------------------------------------------- base access


def _known_base(base: str) -> None:
    if base not in base_names(runtime.core().settings):
        raise ApiError(404, f"no knowledge base {base!r}", code="not_found")


def _access_dict(a) -> dict:
    return {
        "base": a.base,
        "read": list(a.read) if a.read is not None else None,
        "manage": list(a.manage),
        "describe": a.describe(),
    }


@router.get("/bases/{base}/access", summary="Who may read and manage a base (admins)")
async def get_access(base: str, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    await asyncio.to_thread(_known_base, base)
    return _access_dict(await asyncio.to_thread(runtime.core().access.base_access, base))


class AccessChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    read: list[str] | None | str = "unchanged"
    manage: list[str] | str = "unchanged"


@router.put("/bases/{base}/access", summary="Set who may read (null: everyone) and manage a base (admins)")
async def put_access(base: str, body: AccessChange, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    from kbchat.records.access import parse_principals

    await asyncio.to_thread(_known_base, base)

    def principals(value):
        if value == "unchanged" or value is None:
            return value
        if isinstance(value, str):
            raise ApiError(
                400, "give a list of groups and users, null (everyone) or omit it", code="invalid_value"
            )
        return parse_principals(",".join(value)) or []

    def run():
        return runtime.core().access.set_base_access(
            base, read=principals(body.read), manage=principals(body.manage), by=who.name
        )

    try:
        new = await asyncio.to_thread(run)
    except KbchatError as err:
        raise ApiError(400, str(err), code="invalid_value") from None
    await audit(who, "kb.access", base, {"read": _access_dict(new)["read"], "manage": list(new.manage)})
    return _access_dict(new)


# ---------------------------------------------------------------- personas


def _check_id(persona_id: str) -> str:
    try:
        return check_base_name(persona_id)  # the same rule: lower-case letters, digits, - and _
    except KbchatError:
        raise ApiError(
            400, f"{persona_id!r} is not a persona id (a-z, 0-9, - and _)", code="invalid_value"
        ) from None


def _validated(folder: Path, persona_id: str, data: dict | None) -> dict:
    """The personas of ``folder`` with ``persona_id`` written as ``data`` (None: removed), loaded by the
    start-up loader in a scratch copy; ApiError 400 with the loader's line when the set is not valid."""
    c = runtime.core()
    scratch = Path(tempfile.mkdtemp(prefix="kbchat-personas-"))
    try:
        for f in folder.glob("*.yaml"):
            shutil.copy(f, scratch / f.name)
        target = scratch / f"{persona_id}.yaml"
        if data is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        try:
            return load_personas(scratch, bases=base_names(c.settings))
        except KbchatError as err:
            raise ApiError(400, str(err).replace(str(scratch) + "/", ""), code="invalid_persona") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _persona_body(request: Request) -> dict:
    raw = await request.body()
    kind = request.headers.get("content-type", "")
    try:
        data = json.loads(raw) if "json" in kind else yaml.safe_load(raw.decode("utf-8"))
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ApiError(
            400,
            f"the body is not valid {'JSON' if 'json' in kind else 'YAML'}: "
            f"{' '.join(str(err).split())[:200]}",
            code="invalid_value",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "a persona is a mapping of fields", code="invalid_value")
    return data


def _apply(new: dict) -> None:
    personas = runtime.core().personas
    personas.clear()
    personas.update(new)


@router.put(
    "/personas/{persona_id}",
    tags=["personas"],
    summary="Create or replace a persona, as YAML or JSON (admins; validated like personas/*.yaml)",
)
async def put_persona(persona_id: str, request: Request, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    _check_id(persona_id)
    data = await _persona_body(request)
    data.setdefault("id", persona_id)
    folder = Path(runtime.core().settings.personas_dir)
    new = await asyncio.to_thread(_validated, folder, persona_id, data)
    existed = (folder / f"{persona_id}.yaml").exists()
    path = folder / f"{persona_id}.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tmp.replace(path)  # atomic: a crash leaves the old file or the new one
    _apply(new)
    await audit(who, "persona.put", persona_id, {"replaced": existed})
    return new[persona_id].model_dump(mode="json", exclude_none=True)


@router.delete("/personas/{persona_id}", tags=["personas"], summary="Delete a persona (admins)")
async def delete_persona(persona_id: str, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    _check_id(persona_id)
    folder = Path(runtime.core().settings.personas_dir)
    path = folder / f"{persona_id}.yaml"
    if not path.exists():
        raise ApiError(404, f"no persona {persona_id!r}", code="not_found")
    new = await asyncio.to_thread(_validated, folder, persona_id, None)
    path.unlink()
    _apply(new)
    await audit(who, "persona.delete", persona_id)
    return {"deleted": persona_id}


__all__ = ["router"]

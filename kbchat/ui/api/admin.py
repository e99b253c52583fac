"""Admins' REST routes (``/api/v1``, key scope ``knowledge``): who may read and manage each knowledge base,
and personas written or deleted as YAML or JSON in the persona database (the same validator as the YAML
loader and the console's editor; each change a new version, audited with via "api"). A change reaches new chats
of every replica without a restart (the persona cache re-reads the database when it changes)."""

from __future__ import annotations

import asyncio
import json

import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from kbchat.errors import KbchatError
from kbchat.knowledge import base_names, check_base_name
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


def _save(persona_id: str, data: dict, who: Caller):
    """Validate ``data`` as the loader does (a YAML file, the console's editor) and store it as a new version
    of ``persona_id`` in the persona database; ApiError 400 with the loader's line when it is not valid."""
    c = runtime.core()
    records = c.persona_cache.records
    existed = records.get(persona_id) is not None
    try:
        persona = records.save(data, by=who.name, bases=base_names(c.settings), via="api")
    except KbchatError as err:
        raise ApiError(400, str(err), code="invalid_persona") from None
    return persona, existed


def _delete(persona_id: str, who: Caller) -> None:
    records = runtime.core().persona_cache.records
    if records.get(persona_id) is None:
        raise ApiError(404, f"no persona {persona_id!r}", code="not_found")
    try:
        records.delete(persona_id, by=who.name, via="api")
    except KbchatError as err:
        raise ApiError(400, str(err), code="invalid_persona") from None


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


@router.put(
    "/personas/{persona_id}",
    tags=["personas"],
    summary="Create or replace a persona, as YAML or JSON (admins; validated like personas/*.yaml)",
)
async def put_persona(persona_id: str, request: Request, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    _check_id(persona_id)
    data = await _persona_body(request)
    data.setdefault("id", persona_id)
    if data["id"] != persona_id:
        raise ApiError(400, f"the body's id {data['id']!r} is not {persona_id!r}", code="invalid_value")
    persona, existed = await asyncio.to_thread(_save, persona_id, data, who)
    return persona.model_dump(mode="json", exclude_none=True)


@router.delete("/personas/{persona_id}", tags=["personas"], summary="Delete a persona (admins; its versions stay)")
async def delete_persona(persona_id: str, who: Caller = Depends(KNOWLEDGE_ADMIN)):
    _check_id(persona_id)
    await asyncio.to_thread(_delete, persona_id, who)
    return {"deleted": persona_id}


__all__ = ["router"]

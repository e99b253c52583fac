"""People: users (add with a one-time password, role, groups, reset password, remove with what it deletes
spelled out), groups and their quotas, who signed in when. The same records calls as `kbchat users` and
`kbchat groups`, each change written to the audit log."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Depends, Form

from kbchat.errors import KbchatError
from kbchat.messages import error_text
from kbchat.ui import runtime
from kbchat.ui.admin.invite import INVITE_HOURS, invitation_path
from kbchat.ui.admin.shell import Admin, Refused, admin, done, page

router = APIRouter()
SIGN_INS_SHOWN = 30
# A one-time password: 16 URL-safe characters, shown once to the admin who made it.
OTP_BYTES = 12


def _groups_list(raw: str | list[str]) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    return sorted({g.strip() for v in items for g in (v or "").split(",") if g.strip()})


def _people() -> dict:
    c = runtime.core()
    accts = c.accounts.list()
    logins = c.access.audit_log(action="login*", limit=5000)
    last: dict[str, str] = {}
    for row in logins:
        if row["action"] == "login" and row["user_identifier"]:
            last[row["user_identifier"]] = row["at"]
    users = []
    for a in accts:
        member = c.access.memberships_of(a.identifier)
        users.append({"a": a, "last": last.get(a.identifier),
                      "hand": sorted(g for g, src in member.items() if "admin" in src),
                      "idp": sorted(g for g, src in member.items() if "admin" not in src)})
    groups = [{"g": g, "bases": c.access.bases_naming(g.name)} for g in c.access.list_groups()]
    return {"users": users, "groups": groups, "sign_ins": logins[::-1][:SIGN_INS_SHOWN],
            "default_quota": c.settings.quota_questions_per_day}


async def _render(adm: Admin, *, status: int = 200, **extra):
    values = await asyncio.to_thread(_people)
    return page(adm, "people.html", "adm_nav_people", active="people", status=status, **{**values, **extra})


@router.get("/admin/people")
async def people(adm: Admin = Depends(admin)):
    """GET /admin/people: users with role, groups and last sign-in; groups with quotas; recent sign-ins."""
    return await _render(adm)


def _add_user(adm: Admin, name: str, role: str, groups: list[str], password: str, invite: bool) -> str:
    c = runtime.core()
    for g in groups:
        if not c.access.group_exists(g):
            raise Refused(400, "adm_no_group", group=g)
    one_time = None if invite else password or secrets.token_urlsafe(OTP_BYTES)
    acct = c.accounts.add(name.strip(), one_time, role=role if role in ("admin", "user") else "user")
    adm.audit("user.add", acct.identifier, {"role": acct.role, "groups": groups, **({"invited": True} if invite
                                                                                     else {})})
    for g in groups:
        c.access.add_member(acct.identifier, g)
        adm.audit("group.member.add", acct.identifier, {"group": g})
    if invite:
        return str(adm.request.base_url).rstrip("/") + invitation_path(acct.identifier)
    return one_time if not password else ""


@router.post("/admin/people/add")
async def add_user(adm: Admin = Depends(admin), name: str = Form(""), role: str = Form("user"),
                   groups: list[str] = Form([]), password: str = Form(""), invite: str = Form("")):
    """POST /admin/people/add: a new account; without a password one is made and shown once, or (invite)
    a link with which they choose their own within INVITE_HOURS."""
    try:
        shown = await asyncio.to_thread(_add_user, adm, name, role, _groups_list(groups), password, bool(invite))
    except Refused as err:
        return await _render(adm, status=400, error=adm.t(err.key, **err.params))
    except KbchatError as err:
        return await _render(adm, status=400, error=error_text(adm.lang, err))
    if shown and invite:
        return await _render(adm, invitation=(name.strip(), shown, INVITE_HOURS))
    if shown:
        return await _render(adm, one_time=(name.strip(), shown))
    return done(adm, "/admin/people", "adm_user_added")


def _require_user(name: str):
    acct = runtime.core().accounts.get(name)
    if acct is None:
        raise Refused(404, "adm_not_found")
    return acct


def _set_groups(adm: Admin, name: str, groups: list[str]) -> None:
    c = runtime.core()
    _require_user(name)
    for g in groups:
        if not c.access.group_exists(g):
            raise Refused(400, "adm_no_group", group=g)
    have = {g for g, src in c.access.memberships_of(name).items() if "admin" in src}
    for g in sorted(set(groups) - have):
        c.access.add_member(name, g)
        adm.audit("group.member.add", name, {"group": g})
    for g in sorted(have - set(groups)):
        c.access.remove_member(name, g)
        adm.audit("group.member.remove", name, {"group": g})


@router.post("/admin/people/{name}/groups")
async def set_groups(name: str, adm: Admin = Depends(admin), groups: list[str] = Form([])):
    """POST /admin/people/<name>/groups: the user's hand-set groups become exactly these."""
    try:
        await asyncio.to_thread(_set_groups, adm, name, _groups_list(groups))
    except Refused as err:
        if err.status == 404:
            raise
        return await _render(adm, status=400, error=adm.t(err.key, **err.params))
    return done(adm, "/admin/people")


def _set_role(adm: Admin, name: str, role: str) -> None:
    _require_user(name)
    if name == adm.name and role != "admin":
        raise Refused(400, "adm_not_yourself")
    runtime.core().accounts.set_role(name, role)
    adm.audit("user.role", name, {"role": role})


@router.post("/admin/people/{name}/role")
async def set_role(name: str, adm: Admin = Depends(admin), role: str = Form(...)):
    """POST /admin/people/<name>/role: admin or user (an admin cannot demote themself here)."""
    return await _change(adm, "adm_saved", _set_role, adm, name, role)


async def _change(adm: Admin, notice: str, fn, *args):
    """Run a change of one user in a worker thread: back to People with ``notice``, or the page again with
    the one-line reason (400); an unknown user stays a 404."""
    try:
        await asyncio.to_thread(fn, *args)
    except Refused as err:
        if err.status == 404:
            raise
        return await _render(adm, status=400, error=adm.t(err.key))
    except KbchatError as err:
        return await _render(adm, status=400, error=error_text(adm.lang, err))
    return done(adm, "/admin/people", notice)


def _set_disabled(adm: Admin, name: str, disabled: bool) -> None:
    _require_user(name)
    if name == adm.name and disabled:
        raise Refused(400, "adm_not_yourself")
    runtime.core().accounts.set_disabled(name, disabled)
    adm.audit("user.disable" if disabled else "user.enable", name)


@router.post("/admin/people/{name}/disabled")
async def set_disabled(name: str, adm: Admin = Depends(admin), disabled: str = Form(...)):
    """POST /admin/people/<name>/disabled (disabled=1 or 0): a disabled user cannot sign in and their
    session and API keys are refused at once; their chats, groups and keys stay. Not oneself."""
    notice = "adm_user_disabled" if disabled == "1" else "adm_user_enabled"
    return await _change(adm, notice, _set_disabled, adm, name, disabled == "1")


def _reset(adm: Admin, name: str) -> str:
    _require_user(name)
    one_time = secrets.token_urlsafe(OTP_BYTES)
    runtime.core().accounts.set_password(name, one_time)
    adm.audit("user.password", name)
    return one_time


@router.post("/admin/people/{name}/password")
async def reset_password(name: str, adm: Admin = Depends(admin)):
    """POST /admin/people/<name>/password: a new one-time password, shown once."""
    shown = await asyncio.to_thread(_reset, adm, name)
    return await _render(adm, one_time=(name, shown))


def _removal(name: str) -> dict:
    c = runtime.core()
    acct = _require_user(name)
    threads = c.history.thread_ids_of(name)
    uploads = sum(len(c.history.uploads(tid)) for tid in threads)
    return {"who": acct, "threads": len(threads), "uploads": uploads,
            "groups": sorted(c.access.memberships_of(name)),
            "bases": sorted(b for b, a in c.access.all_access().items()
                            if f"user:{name}" in (a.read or ()) or f"user:{name}" in a.manage)}


@router.get("/admin/people/{name}/remove")
async def confirm_remove(name: str, adm: Admin = Depends(admin)):
    """GET /admin/people/<name>/remove: what removing this user deletes, and the button."""
    facts = await asyncio.to_thread(_removal, name)
    return page(adm, "people_remove.html", "adm_remove_user", active="people", **facts)


def _remove(adm: Admin, name: str) -> None:
    from kbchat.records.history import delete_user_threads

    c = runtime.core()
    _require_user(name)
    if name == adm.name:
        raise Refused(400, "adm_not_yourself")
    with c.write_lock:
        n = delete_user_threads(c.history, c.store, c.settings.data_dir, name, c.settings.uploads_dir)
    c.accounts.remove(name)
    adm.audit("user.remove", name, {"threads": n})


@router.post("/admin/people/{name}/remove")
async def remove_user(name: str, adm: Admin = Depends(admin)):
    """POST /admin/people/<name>/remove: the account, its chats and uploads, memberships and access entries
    (shared Q&A records stay, under the name)."""
    await asyncio.to_thread(_remove, adm, name)
    return done(adm, "/admin/people", "adm_user_removed")


def _add_group(adm: Admin, name: str, quota: str) -> None:
    c = runtime.core()
    c.access.add_group(name.strip())
    adm.audit("group.add", name.strip())
    if quota.strip():
        _quota(adm, name.strip(), quota)


def _quota(adm: Admin, name: str, quota: str) -> None:
    raw = quota.strip()
    if raw and not raw.isdigit():
        raise Refused(400, "adm_bad_quota")
    per_day = int(raw) if raw else None
    runtime.core().access.set_group_quota(name, per_day)
    adm.audit("group.quota", name, {"per_day": per_day})


@router.post("/admin/groups/add")
async def add_group(adm: Admin = Depends(admin), name: str = Form(""), quota: str = Form("")):
    """POST /admin/groups/add: a new group, with its questions per day (blank: the default)."""
    try:
        await asyncio.to_thread(_add_group, adm, name, quota)
    except Refused as err:
        return await _render(adm, status=400, error=adm.t(err.key))
    except KbchatError as err:
        return await _render(adm, status=400, error=error_text(adm.lang, err))
    return done(adm, "/admin/people", "adm_group_added")


@router.post("/admin/groups/{name}/quota")
async def group_quota(name: str, adm: Admin = Depends(admin), quota: str = Form("")):
    """POST /admin/groups/<name>/quota: questions per day for the group's members (blank: the default)."""
    try:
        await asyncio.to_thread(_quota, adm, name, quota)
    except Refused as err:
        return await _render(adm, status=400, error=adm.t(err.key))
    except KbchatError as err:
        return await _render(adm, status=400, error=error_text(adm.lang, err))
    return done(adm, "/admin/people")


def _remove_group(adm: Admin, name: str) -> None:
    changed = runtime.core().access.remove_group(name, force=True)
    adm.audit("group.remove", name, {"bases": changed} if changed else None)


@router.post("/admin/groups/{name}/remove")
async def remove_group(name: str, adm: Admin = Depends(admin)):
    """POST /admin/groups/<name>/remove: the group and its memberships; bases naming it forget it."""
    try:
        await asyncio.to_thread(_remove_group, adm, name)
    except KbchatError as err:
        return await _render(adm, status=400, error=error_text(adm.lang, err))
    return done(adm, "/admin/people", "adm_group_removed")

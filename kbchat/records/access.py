"""Who may read what: groups and memberships, access per knowledge base, the audit log and question
quotas, all in the one database (so a change made on one replica applies to the next question on every
other). No Chainlit, no store: the UI, the CLI and the search callers ask these questions and choose which
collections to search from the answers.

Rules: an admin reads and manages every base. A base with no access row (or ``read`` NULL) is readable by
everyone signed in: today's behaviour and the default. Otherwise ``read`` lists principals, ``group:NAME``
or ``user:NAME``, and ``[]`` means admins only (what removing the last group of a base with --force
leaves: never everybody). ``manage`` lists who may add and remove documents besides admins.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from kbchat.errors import KbchatError
from kbchat.records.database import (
    Database,
    audit,
    drop_principal,
    groups,
    kb_access,
    memberships,
    now_iso,
    question_counts,
    users,
)

log = logging.getLogger("kbchat")

EVERYONE = "everyone"
ADMIN_SOURCE, IDP_SOURCE = "admin", "idp"
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_IDP_GROUPS = 100          # groups taken from one sign-in's header or claim; the rest are dropped
MAX_GROUPS_HEADER = 8192      # characters of a groups header read at all


class AccessError(KbchatError):
    """An access change that cannot be made (unknown group or user, a bad name, a group still in use)."""


def check_group_name(name: str) -> str:
    """A group name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not isinstance(name, str) or not GROUP_NAME.match(name):
        raise AccessError(f"not a group name: {name!r} (use letters, digits, '.', '_' and '-')")
    return name


@dataclass(frozen=True)
class BaseAccess:
    """Who may read and manage one knowledge base. ``read`` None: everyone signed in."""

    base: str
    read: tuple[str, ...] | None = None
    manage: tuple[str, ...] = ()

    def describe(self) -> str:
        """'everyone', 'admins only' or the principals, for listings."""
        if self.read is None:
            return EVERYONE
        return ", ".join(self.read) if self.read else "admins only"


@dataclass(frozen=True)
class Group:
    """A group with its per-day question quota (None: the default) and members."""

    name: str
    quota_per_day: int | None
    members: tuple[str, ...]


@dataclass(frozen=True)
class Quota:
    """Where a user stands against the question quota of today (UTC)."""

    allowed: bool
    limit: int | None
    used: int
    resets_at: datetime


def parse_principals(spec: str) -> list[str] | None:
    """``--read`` / ``--manage`` text: comma-separated groups (``hr`` or ``group:hr``) and users
    (``user:alice``); ``everyone`` alone gives None."""
    items = [x.strip() for x in (spec or "").split(",") if x.strip()]
    if items == [EVERYONE]:
        return None
    out = []
    for item in items:
        if item == EVERYONE:
            raise AccessError("'everyone' cannot be combined with groups or users")
        kind, _, name = item.partition(":") if ":" in item else ("group", "", item)
        if kind not in ("group", "user") or not name:
            raise AccessError(f"not a group or user: {item!r} (write hr, group:hr or user:alice)")
        out.append(f"{kind}:{name}")
    return out


def clean_idp_groups(raw, *, source: str) -> list[str]:
    """Group names from an identity provider (a header's comma-separated text or a claim's list), with
    hostile content dropped: names that are not group names, more than MAX_IDP_GROUPS. One warning line
    says what was dropped; the sign-in goes on either way."""
    if raw is None:
        return []
    if isinstance(raw, str):
        items = raw[:MAX_GROUPS_HEADER].split(",")
        cut = len(raw) > MAX_GROUPS_HEADER
    elif isinstance(raw, (list, tuple)):
        items, cut = [x for x in raw if isinstance(x, str)], any(not isinstance(x, str) for x in raw)
    else:
        log.warning("groups from %s ignored: not a list or text (%s)", source, type(raw).__name__)
        return []
    good, bad = [], 0
    for item in items:
        name = item.strip()
        if not name:
            continue
        if GROUP_NAME.match(name) and name not in good:
            good.append(name)
        elif not GROUP_NAME.match(name):
            bad += 1
    if len(good) > MAX_IDP_GROUPS:
        good, cut = good[:MAX_IDP_GROUPS], True
    if bad or cut:
        log.warning("groups from %s: %d invalid name(s) dropped%s", source, bad,
                    f", truncated to {len(good)}" if cut else "")
    return good


class Access:
    """Groups, memberships, base access, the audit log and quotas on one Database."""

    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ groups

    def add_group(self, name: str) -> None:
        check_group_name(name)
        try:
            with self.db.begin() as c:
                c.execute(groups.insert().values(name=name, created_at=now_iso()))
        except IntegrityError:
            raise AccessError(f"group {name} already exists") from None

    def group_exists(self, name: str) -> bool:
        with self.db.connect() as c:
            return c.execute(select(groups.c.name).where(groups.c.name == name)).first() is not None

    def list_groups(self) -> list[Group]:
        with self.db.connect() as c:
            rows = c.execute(select(groups).order_by(groups.c.name)).mappings().all()
            members: dict[str, set[str]] = {}
            for m in c.execute(select(memberships.c.group_name, memberships.c.user_identifier)):
                members.setdefault(m[0], set()).add(m[1])
        return [Group(r["name"], r["quota_per_day"], tuple(sorted(members.get(r["name"], ())))) for r in rows]

    def bases_naming(self, group: str) -> list[str]:
        """The bases whose read or manage list names this group."""
        p = f"group:{group}"
        return sorted(a.base for a in self.all_access().values() if p in (a.read or ()) or p in a.manage)

    def remove_group(self, name: str, *, force: bool = False) -> list[str]:
        """Remove a group and its memberships. Refused while a base names it, unless ``force``: then the
        group leaves those lists (a read list left empty means admins only). Returns the bases changed."""
        if not self.group_exists(name):
            raise AccessError(f"no group named {name}")
        named = self.bases_naming(name)
        if named and not force:
            raise AccessError(f"group {name} grants access to {', '.join(named)}: change their access first, "
                              "or use --force (those bases are then readable by admins and the rest of their list)")
        with self.db.begin() as c:
            drop_principal(c, f"group:{name}")
            c.execute(delete(memberships).where(memberships.c.group_name == name))
            c.execute(delete(groups).where(groups.c.name == name))
        return named

    def set_group_quota(self, name: str, per_day: int | None) -> None:
        if per_day is not None and per_day < 0:
            raise AccessError("a quota is a number of questions per day, 0 or more")
        with self.db.begin() as c:
            done = c.execute(update(groups).where(groups.c.name == name).values(quota_per_day=per_day)).rowcount
        if not done:
            raise AccessError(f"no group named {name}")

    # ------------------------------------------------------------------ memberships

    def user_groups(self, user: str) -> set[str]:
        """Every group of ``user``, hand-set and from the identity provider."""
        with self.db.connect() as c:
            return {r[0] for r in c.execute(select(memberships.c.group_name)
                                            .where(memberships.c.user_identifier == user))}

    def memberships_of(self, user: str) -> dict[str, set[str]]:
        """group -> the sources of the membership ({"admin"}, {"idp"} or both)."""
        out: dict[str, set[str]] = {}
        with self.db.connect() as c:
            for g, src in c.execute(select(memberships.c.group_name, memberships.c.source)
                                    .where(memberships.c.user_identifier == user)):
                out.setdefault(g, set()).add(src)
        return out

    def _require_user(self, c, user: str) -> None:
        if c.execute(select(users.c.id).where(users.c.identifier == user)).first() is None:
            raise AccessError(f"no user named {user}")

    def add_member(self, user: str, group: str) -> bool:
        """Hand-set membership (an admin's). False if it was already there."""
        with self.db.begin() as c:
            self._require_user(c, user)
            if c.execute(select(groups.c.name).where(groups.c.name == group)).first() is None:
                raise AccessError(f"no group named {group}")
            if c.execute(select(memberships).where(memberships.c.user_identifier == user,
                                                   memberships.c.group_name == group,
                                                   memberships.c.source == ADMIN_SOURCE)).first():
                return False
            c.execute(memberships.insert().values(user_identifier=user, group_name=group, source=ADMIN_SOURCE))
        return True

    def remove_member(self, user: str, group: str) -> bool:
        """Remove a hand-set membership (one from the identity provider comes back at the next sign-in)."""
        with self.db.begin() as c:
            self._require_user(c, user)
            return bool(c.execute(delete(memberships).where(
                memberships.c.user_identifier == user, memberships.c.group_name == group,
                memberships.c.source == ADMIN_SOURCE)).rowcount)

    def set_idp_groups(self, user: str, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """Replace the identity provider's memberships of ``user`` (hand-set ones stay); groups seen for
        the first time are created. Returns (added, removed)."""
        want = list(dict.fromkeys(names))
        with self.db.begin() as c:
            have = {r[0] for r in c.execute(select(memberships.c.group_name).where(
                memberships.c.user_identifier == user, memberships.c.source == IDP_SOURCE))}
            added = [g for g in want if g not in have]
            removed = sorted(have - set(want))
            known = {r[0] for r in c.execute(select(groups.c.name).where(groups.c.name.in_(added)))} if added else set()
            for g in added:
                if g not in known:
                    c.execute(groups.insert().values(name=g, created_at=now_iso()))
                c.execute(memberships.insert().values(user_identifier=user, group_name=g, source=IDP_SOURCE))
            if removed:
                c.execute(delete(memberships).where(memberships.c.user_identifier == user,
                                                    memberships.c.source == IDP_SOURCE,
                                                    memberships.c.group_name.in_(removed)))
        return added, removed

    # ------------------------------------------------------------------ knowledge-base access

    def all_access(self) -> dict[str, BaseAccess]:
        with self.db.connect() as c:
            return {r["base"]: BaseAccess(r["base"], tuple(r["read"]) if r["read"] is not None else None,
                                          tuple(r["manage"] or ()))
                    for r in c.execute(select(kb_access)).mappings()}

    def base_access(self, base: str) -> BaseAccess:
        return self.all_access().get(base) or BaseAccess(base)

    def set_base_access(self, base: str, *, read: list[str] | None | str = "unchanged",
                        manage: list[str] | str = "unchanged", by: str | None = None) -> BaseAccess:
        """Set who may read (None: everyone) and/or manage a base. Every group and user named must exist:
        one unknown name is an AccessError naming it, and nothing changes."""
        old = self.base_access(base)
        new_read = old.read if read == "unchanged" else (tuple(read) if read is not None else None)
        new_manage = old.manage if manage == "unchanged" else tuple(manage or ())
        with self.db.begin() as c:
            for p in (new_read or ()) + new_manage:
                kind, _, name = p.partition(":")
                if kind == "group":
                    if c.execute(select(groups.c.name).where(groups.c.name == name)).first() is None:
                        raise AccessError(f"no group named {name} (create it with `kbchat groups add {name}`)")
                elif kind == "user":
                    self._require_user(c, name)
                else:
                    raise AccessError(f"not a group or user: {p!r}")
            values = dict(read=list(new_read) if new_read is not None else None, manage=list(new_manage),
                          updated_at=now_iso(), updated_by=by)
            if c.execute(update(kb_access).where(kb_access.c.base == base).values(**values)).rowcount == 0:
                c.execute(kb_access.insert().values(base=base, **values))
        return BaseAccess(base, new_read, new_manage)

    def _principals(self, user: str) -> set[str]:
        return {f"user:{user}"} | {f"group:{g}" for g in self.user_groups(user)}

    def readable(self, user: str | None, is_admin: bool, bases: Iterable[str]) -> list[str]:
        """The bases of ``bases`` this user may read (in the given order). Read from the database each
        call: an access change applies to the next question, on every replica."""
        bases = list(bases)
        if is_admin:
            return bases
        if not user:
            return []
        access = self.all_access()
        mine = self._principals(user)
        return [b for b in bases if (a := access.get(b)) is None or a.read is None or mine & set(a.read)]

    def may_read(self, user: str | None, is_admin: bool, base: str) -> bool:
        return bool(self.readable(user, is_admin, [base]))

    def may_manage(self, user: str | None, is_admin: bool, base: str) -> bool:
        if is_admin:
            return True
        if not user:
            return False
        return bool(self._principals(user) & set(self.base_access(base).manage))

    # ------------------------------------------------------------------ audit log

    def record(self, action: str, user: str | None, target: str | None = None, detail: dict | None = None,
               address: str | None = None) -> None:
        """Append one line to the audit log. Callers never pass a password or a passage's text."""
        with self.db.begin() as c:
            c.execute(audit.insert().values(at=now_iso(), user_identifier=user, action=action,
                                            target=target, detail=detail or None, address=address))

    def audit_log(self, *, since: str | None = None, user: str | None = None, action: str | None = None,
                  limit: int | None = None) -> list[dict]:
        """Audit lines, oldest first (the newest ``limit`` when given)."""
        q = select(audit)
        if since:
            q = q.where(audit.c.at >= since)
        if user:
            q = q.where(audit.c.user_identifier == user)
        if action:
            q = q.where(audit.c.action.like(action.replace("*", "%")) if "*" in action
                        else audit.c.action == action)
        q = q.order_by(audit.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.db.connect() as c:
            rows = [dict(r) for r in c.execute(q).mappings()]
        return rows[::-1]

    # ------------------------------------------------------------------ quotas

    def quota_limit(self, user: str, default: int | None) -> int | None:
        """Questions per day for ``user``: the most generous override among their groups, else ``default``
        (None: no limit)."""
        mine = self.user_groups(user)
        if mine:
            with self.db.connect() as c:
                overrides = [r[0] for r in c.execute(select(groups.c.quota_per_day).where(
                    groups.c.name.in_(mine), groups.c.quota_per_day.is_not(None)))]
            if overrides:
                return max(overrides)
        return default

    def take_question(self, user: str, limit: int | None, *, now: datetime | None = None) -> Quota:
        """Count one question of ``user`` today, unless that would pass ``limit``: atomic in the database,
        so two replicas never let the N+1st through."""
        now = now or datetime.now(timezone.utc)
        day = now.strftime("%Y-%m-%d")
        resets = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)
        ins = (_dialect_insert(self.db))(question_counts).values(user_identifier=user, day=day, n=1)
        stmt = ins.on_conflict_do_update(
            index_elements=["user_identifier", "day"], set_={"n": question_counts.c.n + 1},
            where=(question_counts.c.n < limit) if limit is not None else None)
        with self.db.begin() as c:
            if limit is not None and limit <= 0:
                taken = False
            else:
                # RETURNING, not rowcount: PostgreSQL (psycopg) reports a row for an upsert whose WHERE
                # kept the row unchanged, so the N+1st question went through there
                taken = c.execute(stmt.returning(question_counts.c.n)).first() is not None
            used = c.execute(select(question_counts.c.n).where(question_counts.c.user_identifier == user,
                                                                question_counts.c.day == day)).scalar() or 0
        return Quota(allowed=bool(taken), limit=limit, used=used, resets_at=resets)

    def questions_on(self, day: str) -> dict[str, int]:
        with self.db.connect() as c:
            return {u: n for u, n in c.execute(select(question_counts.c.user_identifier, question_counts.c.n)
                                                .where(question_counts.c.day == day))}

    def count_groups(self) -> int:
        with self.db.connect() as c:
            return c.execute(select(func.count()).select_from(groups)).scalar() or 0


def _dialect_insert(db: Database):
    if db.is_sqlite:
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


__all__ = ["ADMIN_SOURCE", "EVERYONE", "IDP_SOURCE", "Access", "AccessError", "BaseAccess", "Group", "Quota",
           "check_group_name", "clean_idp_groups", "parse_principals"]

"""Personas in the database: the current record of each persona (its YAML fields, draft or published) and
every version of it (who changed what, when), with restore. The YAML files of ``personas/`` seed the
tables on the first start; every change is validated by the loader's own validator
(``kbchat.personas.validate_persona``) and written with its audit line in one transaction.

Rules kept here: exactly one published persona is the default (saving another one as default moves it;
the default cannot lose it, be a draft or be removed); drafts are never in the chat. The chat reads
:meth:`PersonaCache.current`, rebuilt when ``max(persona_versions.id)`` (every change appends a version)
or the set of knowledge bases changes, so an edit applies to the next chat on every replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from kbchat.errors import KbchatError
from kbchat.personas import (
    Persona,
    PersonaInvalid,
    base_problem,
    default_first,
    load_personas,
    persona_data,
    validate_persona,
)
from kbchat.records.database import Database, audit, now_iso, persona_versions, personas

log = logging.getLogger("kbchat")

DRAFT, PUBLISHED = "draft", "published"
STATUSES = (DRAFT, PUBLISHED)


class PersonaError(KbchatError):
    """A persona change that cannot be made (unknown persona or version, the default removed, a conflict)."""


@dataclass(frozen=True)
class PersonaRecord:
    """One persona as stored: its fields, status and version; ``persona`` None when the stored fields no
    longer validate (``problem`` says why)."""

    id: str
    data: dict[str, Any]
    status: str
    version: int
    updated_at: str
    updated_by: str | None
    persona: Persona | None = None
    problem: str | None = None


@dataclass(frozen=True)
class PersonaVersion:
    """One version of a persona: what it held, which action made it, the fields it changed, who and when."""

    persona_id: str
    version: int
    action: str
    status: str
    data: dict[str, Any]
    changed: list[str]
    changed_by: str | None
    changed_at: str


@dataclass(frozen=True)
class Catalog:
    """What the chat offers: the published personas that work (default first), and why the others do not."""

    revision: int
    personas: dict[str, Persona] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)     # id -> the reason, one line
    drafts: tuple[str, ...] = ()


def _where(pid: Any) -> str:
    return f"persona '{pid}'" if isinstance(pid, str) and pid else "persona"


def _changed(old: dict | None, new: dict) -> list[str]:
    if old is None:
        return sorted(new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class PersonaRecords:
    """The personas and their versions in the one database."""

    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ reading

    def revision(self) -> int:
        """A number that grows with every change of any persona (0: none ever stored)."""
        with self.db.connect() as c:
            return int(c.execute(select(func.max(persona_versions.c.id))).scalar() or 0)

    def records(self) -> list[PersonaRecord]:
        """Every persona (drafts too), the default first, then by id."""
        with self.db.connect() as c:
            rows = list(c.execute(select(personas).order_by(personas.c.id)).mappings())
        out = [self._record(r) for r in rows]
        return sorted(out, key=lambda r: (not (r.persona and r.persona.default and r.status == PUBLISHED), r.id))

    def get(self, pid: str) -> PersonaRecord | None:
        """The persona ``pid``, or None."""
        with self.db.connect() as c:
            row = c.execute(select(personas).where(personas.c.id == pid)).mappings().first()
        return self._record(row) if row else None

    @staticmethod
    def _record(row) -> PersonaRecord:
        data = dict(row["data"] or {})
        try:
            persona, problem = validate_persona(data, _where(row["id"])), None
        except PersonaInvalid as e:
            persona, problem = None, "; ".join(f"field '{f}': {m}" if f else m for f, m in e.problems)
        return PersonaRecord(row["id"], data, row["status"], row["version"], row["updated_at"], row["updated_by"],
                             persona, problem)

    def versions(self, pid: str) -> list[PersonaVersion]:
        """Every version of ``pid``, newest first."""
        q = select(persona_versions).where(persona_versions.c.persona_id == pid).order_by(persona_versions.c.id.desc())
        with self.db.connect() as c:
            return [PersonaVersion(r["persona_id"], r["version"], r["action"], r["status"], dict(r["data"] or {}),
                                   list(r["changed"] or []), r["changed_by"], r["changed_at"])
                    for r in c.execute(q).mappings()]

    def removed(self) -> list[PersonaVersion]:
        """The last version of each removed persona (what restore can bring back), newest first."""
        with self.db.connect() as c:
            current = {r[0] for r in c.execute(select(personas.c.id))}
            rows = list(c.execute(select(persona_versions).order_by(persona_versions.c.id.desc())).mappings())
        seen: set[str] = set()
        out = []
        for r in rows:
            if r["persona_id"] in seen or r["persona_id"] in current:
                continue
            seen.add(r["persona_id"])
            if r["action"] == "delete":
                out.append(PersonaVersion(r["persona_id"], r["version"], r["action"], r["status"], dict(r["data"] or {}),
                                          list(r["changed"] or []), r["changed_by"], r["changed_at"]))
        return out

    def catalog(self, bases: Iterable[str]) -> Catalog:
        """The published personas whose bases all exist among ``bases`` (default first), and the broken ones."""
        rev = self.revision()
        known = list(bases)
        ok: dict[str, Persona] = {}
        broken: dict[str, str] = {}
        drafts: list[str] = []
        for rec in self.records():
            if rec.status != PUBLISHED:
                drafts.append(rec.id)
            elif rec.persona is None:
                broken[rec.id] = rec.problem or "invalid"
            elif problem := base_problem(rec.persona, known):
                broken[rec.id] = f"field '{problem[0]}': {problem[1]}"
            else:
                ok[rec.id] = rec.persona
        return Catalog(rev, default_first(ok), broken, tuple(drafts))

    # ------------------------------------------------------------------ changing

    def save(self, data: Any, *, by: str | None, status: str | None = None, bases: Iterable[str] | None = None,
             expected_version: int | None = None, action: str | None = None, address: str | None = None, via: str | None = None) -> Persona:
        """Create or update a persona from its fields (validated as a YAML file is; with ``bases``, its
        knowledge bases must exist). ``status`` None keeps the current one (a new persona: published).
        ``expected_version``: the version the editor showed; another one means somebody saved in between.
        Nothing is written when the fields and status are unchanged. Raises PersonaInvalid / PersonaError."""
        persona = validate_persona(data, _where(data.get("id") if isinstance(data, dict) else None), bases=bases)
        with self.db.begin() as c:
            self._save(c, persona, by=by, status=status, expected_version=expected_version, action=action,
                       address=address, via=via)
        return persona

    def _save(self, c: Connection, persona: Persona, *, by: str | None, status: str | None,
              expected_version: int | None = None, action: str | None = None, address: str | None = None,
              via: str | None = None) -> bool:
        where = _where(persona.id)
        data = persona_data(persona)
        cur = c.execute(select(personas).where(personas.c.id == persona.id)).mappings().first()
        if expected_version is not None and (cur["version"] if cur else 0) != expected_version:
            who = f" by {cur['updated_by']}" if cur and cur["updated_by"] else ""
            raise PersonaError(f"{where} was changed{who} since it was opened (now version "
                               f"{cur['version'] if cur else 0}); reload it and make the change again")
        status = status or (cur["status"] if cur else PUBLISHED)
        if status not in STATUSES:
            raise PersonaInvalid(where, [("status", f"must be one of {', '.join(STATUSES)}")])
        if persona.default and status != PUBLISHED:
            raise PersonaInvalid(where, [("default", "a draft cannot be the default persona; publish it first")])
        was_default = bool(cur and cur["status"] == PUBLISHED and (cur["data"] or {}).get("default"))
        if was_default and not (persona.default and status == PUBLISHED):
            raise PersonaInvalid(where, [("default", "exactly one persona must have 'default: true' (found: none); "
                                                     "make another persona the default first")])
        if cur and dict(cur["data"] or {}) == data and cur["status"] == status:
            return False
        version = (cur["version"] if cur else 0) + 1
        at = now_iso()
        values = dict(data=data, status=status, version=version, updated_at=at, updated_by=by)
        if cur:
            c.execute(personas.update().where(personas.c.id == persona.id).values(**values))
        else:
            c.execute(personas.insert().values(id=persona.id, **values))
        changed = _changed(dict(cur["data"] or {}) if cur else None, data)
        if cur and cur["status"] != status:
            changed.append("status")
        act = action or ("create" if cur is None else "update")
        self._version(c, persona.id, version, act, status, data, changed, by, at)
        self._audit(c, f"persona.{act}", persona.id, {"version": version, "changed": changed, "status": status},
                    by, address, via)
        if persona.default and status == PUBLISHED:  # the default moves here: the others lose it
            for other in c.execute(select(personas).where(personas.c.id != persona.id)).mappings():
                odata = dict(other["data"] or {})
                if odata.get("default"):
                    odata.pop("default")
                    over = other["version"] + 1
                    c.execute(personas.update().where(personas.c.id == other["id"]).values(
                        data=odata, version=over, updated_at=at, updated_by=by))
                    self._version(c, other["id"], over, "update", other["status"], odata, ["default"], by, at)
        return True

    @staticmethod
    def _version(c: Connection, pid: str, version: int, action: str, status: str, data: dict, changed: list[str],
                 by: str | None, at: str) -> None:
        c.execute(persona_versions.insert().values(persona_id=pid, version=version, action=action, status=status,
                                                   data=data, changed=changed, changed_by=by, changed_at=at))

    @staticmethod
    def _audit(c: Connection, action: str, target: str, detail: dict, by: str | None, address: str | None,
               via: str | None = None) -> None:
        if via:
            detail = {**detail, "via": via}
        c.execute(audit.insert().values(at=now_iso(), user_identifier=by, action=action, target=target,
                                        detail=detail, address=address))

    def set_status(self, pid: str, status: str, *, by: str | None, address: str | None = None,
                   via: str | None = None) -> Persona:
        """Publish a draft or take a persona back to draft."""
        rec = self._existing(pid)
        if rec.persona is None:
            raise PersonaInvalid(_where(pid), [("", rec.problem or "invalid")])
        with self.db.begin() as c:
            self._save(c, rec.persona, by=by, status=status, action="publish" if status == PUBLISHED else "unpublish",
                       address=address, via=via)
        return rec.persona

    def restore(self, pid: str, version: int, *, by: str | None, address: str | None = None,
                via: str | None = None) -> Persona:
        """Make version ``version`` of ``pid`` current again (as a new version; the history stays)."""
        old = next((v for v in self.versions(pid) if v.version == version), None)
        if old is None:
            raise PersonaError(f"{_where(pid)} has no version {version}")
        persona = validate_persona(old.data, _where(pid))
        cur = self.get(pid)
        status = PUBLISHED if persona.default else (cur.status if cur else old.status)
        with self.db.begin() as c:
            self._save(c, persona, by=by, status=status, action="restore", address=address, via=via)
        return persona

    def delete(self, pid: str, *, by: str | None, address: str | None = None, via: str | None = None) -> None:
        """Remove ``pid`` (its versions stay: it can be restored). The default persona cannot be removed."""
        rec = self._existing(pid)
        if rec.status == PUBLISHED and rec.data.get("default"):
            raise PersonaError(f"{_where(pid)} is the default persona: make another persona the default first")
        with self.db.begin() as c:
            c.execute(personas.delete().where(personas.c.id == pid))
            at = now_iso()
            self._version(c, pid, rec.version + 1, "delete", rec.status, rec.data, [], by, at)
            self._audit(c, "persona.delete", pid, {"version": rec.version}, by, address, via)

    def _existing(self, pid: str) -> PersonaRecord:
        rec = self.get(pid)
        if rec is None:
            known = ", ".join(r.id for r in self.records()) or "none"
            raise PersonaError(f"unknown persona '{pid}' (known: {known})")
        return rec

    def import_personas(self, items: Iterable[Persona], *, by: str | None, status: str | None = None,
                        action: str = "import", address: str | None = None, via: str | None = None) -> dict[str, int]:
        """Store several personas in one transaction (new ones created, changed ones updated, the same ones
        left alone): {"created": n, "updated": n, "unchanged": n}. A default among them becomes the default."""
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        items = sorted(items, key=lambda p: not p.default)  # the default first: it may take over from the old one
        with self.db.begin() as c:
            for p in items:
                existed = c.execute(select(personas.c.id).where(personas.c.id == p.id)).first() is not None
                if self._save(c, p, by=by, status=status, action=action, address=address, via=via):
                    counts["updated" if existed else "created"] += 1
                else:
                    counts["unchanged"] += 1
        return counts

    def seed(self, folder: str | Path) -> int:
        """On the first start (no persona and no version stored yet): the folder's YAML personas, published.
        Another replica seeding at the same moment wins; this one then leaves it. The number seeded."""
        with self.db.connect() as c:
            if c.execute(select(func.count()).select_from(persona_versions)).scalar():
                return 0
        found = load_personas(folder)  # a bad file stops the start with one line, as before
        try:
            with self.db.begin() as c:
                for p in found.values():
                    self._save(c, p, by=None, status=PUBLISHED, action="seed")
        except IntegrityError:
            return 0
        log.info("personas: %d seeded from %s", len(found), folder)
        return len(found)


class PersonaCache:
    """The chat's view of the personas, rebuilt only when a persona or the set of knowledge bases changed
    (one small query per look). A persona that becomes broken is logged once, in one line."""

    def __init__(self, records: PersonaRecords, bases: Callable[[], list[str]]):
        self.records = records
        self.bases = bases
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._catalog = Catalog(0)
        self._told: set[tuple[str, str]] = set()

    def current(self) -> Catalog:
        """The catalog as the database has it now."""
        key = (self.records.revision(), tuple(self.bases()))
        with self._lock:
            if key != self._key:
                self._catalog = self.records.catalog(key[1])
                self._key = key
                for pid, why in self._catalog.broken.items():
                    if (pid, why) not in self._told:
                        self._told.add((pid, why))
                        log.warning("persona %r left out of the chat: %s", pid, why)
            return self._catalog


__all__ = ["Catalog", "DRAFT", "PUBLISHED", "PersonaCache", "PersonaError", "PersonaRecord", "PersonaRecords",
           "PersonaVersion"]

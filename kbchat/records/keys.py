"""API keys: a program calls kbchat's HTTP API as one of its users, with that user's access and quota and
only the scopes the key was given. A key is ``kbk_`` + 32 random bytes (``secrets``); only its SHA-256 is
stored, so the key is shown once, when it is made, and never again."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from kbchat.errors import KbchatError
from kbchat.records.database import Database, api_keys, now_iso

PREFIX = "kbk_"
SCOPES = ("chat", "search", "knowledge", "dataset")
DEFAULT_SCOPES = ("chat", "search")
_DURATION = re.compile(r"^(\d{1,5})([dhm])$")


class ApiKeyError(KbchatError):
    """A key request that cannot be done (unknown scope, bad duration, unknown key)."""


@dataclass(frozen=True)
class ApiKey:
    """One stored key (never the key itself)."""

    id: str
    prefix: str
    user: str
    label: str
    scopes: tuple[str, ...]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None

    def state(self, now: datetime | None = None) -> str:
        """'active', 'revoked' or 'expired'."""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= (now or datetime.now(timezone.utc)).isoformat():
            return "expired"
        return "active"

    def public(self) -> dict:
        """What a listing shows (JSON-able)."""
        return {"id": self.id, "prefix": self.prefix, "user": self.user, "label": self.label,
                "scopes": list(self.scopes), "created_at": self.created_at, "expires_at": self.expires_at,
                "revoked_at": self.revoked_at, "last_used_at": self.last_used_at, "state": self.state()}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_scopes(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """'chat,search' (or a list) -> ('chat', 'search'); None -> the default scopes; an unknown one raises."""
    if spec is None:
        return DEFAULT_SCOPES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    bad = [s for s in names if s not in SCOPES]
    if bad or not names:
        raise ApiKeyError(f"unknown scope {', '.join(bad) or '(none)'}: choose from {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in names)


def parse_expiry(spec: str | None, now: datetime | None = None) -> str | None:
    """'90d', '12h', '30m' -> the UTC time it expires (ISO); None or 'never' -> None."""
    if spec is None or spec.strip().lower() in ("", "never"):
        return None
    m = _DURATION.match(spec.strip().lower())
    if not m or int(m.group(1)) == 0:
        raise ApiKeyError(f"--expires {spec!r} is not a duration like 90d, 12h or 30m")
    unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
    return ((now or datetime.now(timezone.utc)) + timedelta(**{unit: int(m.group(1))})).isoformat()


class ApiKeys:
    """The api_keys table."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def _key(row) -> ApiKey:
        return ApiKey(id=row["id"], prefix=row["prefix"], user=row["user_identifier"],
                      label=row["label"] or "",
                      scopes=tuple(row["scopes"] or ()), created_at=row["created_at"],
                      expires_at=row["expires_at"], revoked_at=row["revoked_at"],
                      last_used_at=row["last_used_at"])

    def create(self, user: str, *, label: str = "", scopes=None, expires: str | None = None,
               by: str | None = None) -> tuple[str, ApiKey]:
        """(the new key, shown once; its stored record)."""
        wanted = parse_scopes(scopes)
        until = parse_expiry(expires)
        key = PREFIX + secrets.token_urlsafe(32)
        row = {"id": secrets.token_hex(6), "key_hash": hash_key(key), "prefix": key[:10],
               "user_identifier": user, "label": (label or "")[:200], "scopes": list(wanted),
               "created_at": now_iso(), "created_by": by, "expires_at": until}
        with self.db.begin() as c:
            c.execute(api_keys.insert().values(**row))
        return key, self._key({**row, "revoked_at": None, "last_used_at": None})

    def list(self, user: str | None = None) -> list[ApiKey]:
        """Keys, oldest first; only ``user``'s when given."""
        q = select(api_keys).order_by(api_keys.c.created_at)
        if user is not None:
            q = q.where(api_keys.c.user_identifier == user)
        with self.db.connect() as c:
            return [self._key(r) for r in c.execute(q).mappings()]

    def get(self, key_id: str) -> ApiKey | None:
        with self.db.connect() as c:
            row = c.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return self._key(row) if row else None

    def revoke(self, key_id: str, *, user: str | None = None) -> ApiKey:
        """Revoke key ``key_id`` (only if it is ``user``'s, when given); revoking twice is harmless."""
        found = self.get(key_id)
        if found is None or (user is not None and found.user != user):
            raise ApiKeyError(f"no key {key_id!r}" + (f" of {user}" if user else ""))
        if not found.revoked_at:
            with self.db.begin() as c:
                c.execute(api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                          .values(revoked_at=now_iso()))
        return self.get(key_id)  # type: ignore[return-value]

    def revoke_user(self, user: str) -> int:
        """Revoke every key of ``user`` (their account is removed)."""
        with self.db.begin() as c:
            return c.execute(api_keys.update().where(api_keys.c.user_identifier == user,
                                                     api_keys.c.revoked_at.is_(None))
                             .values(revoked_at=now_iso())).rowcount or 0

    def verify(self, key: str) -> tuple[ApiKey | None, str]:
        """(the key's record, '') when ``key`` is active; (record or None, 'unknown'|'revoked'|'expired')
        otherwise. Marks the key used (at most once a minute, to spare the database)."""
        if not key.startswith(PREFIX) or len(key) > 100:
            return None, "unknown"
        with self.db.connect() as c:
            row = c.execute(select(api_keys).where(api_keys.c.key_hash == hash_key(key))).mappings().first()
        if row is None:
            return None, "unknown"
        found = self._key(row)
        state = found.state()
        if state != "active":
            return found, state
        now = now_iso()
        if not found.last_used_at or found.last_used_at[:16] != now[:16]:
            with self.db.begin() as c:
                c.execute(api_keys.update().where(api_keys.c.id == found.id).values(last_used_at=now))
            found = ApiKey(**{**found.__dict__, "last_used_at": now})
        return found, ""


__all__ = ["DEFAULT_SCOPES", "PREFIX", "SCOPES", "ApiKey", "ApiKeyError", "ApiKeys", "hash_key",
           "parse_expiry", "parse_scopes"]

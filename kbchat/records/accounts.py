"""Accounts and roles in the kbchat database, argon2 password hashes, the auth-secret file and the
failed-login rate limit. No Chainlit: the CLI and the UI layer both use it."""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select

from kbchat.errors import KbchatError
from kbchat.records.database import Database, drop_principal, memberships, now_iso, users

log = logging.getLogger("kbchat")

Role = Literal["admin", "user"]
ROLES: tuple[str, ...] = ("admin", "user")
LOCAL_USER = "local"            # the one user of single-user mode
MIN_PASSWORD = 8
_NAME = re.compile(r"[^\s/\\\x00-\x1f\x7f]{1,64}")
_HASHER = PasswordHasher()      # argon2id with the library's current recommended parameters
_DUMMY_HASH = _HASHER.hash("kbchat-not-a-password")


class AccountError(KbchatError):
    """An account operation that cannot be done (unknown user, bad name, short password)."""


@dataclass(frozen=True)
class Account:
    """One user: name (``identifier``), role and how they sign in."""

    id: str
    identifier: str
    role: str
    source: str                 # password | header | oauth | local
    has_password: bool
    created_at: str
    display_name: str | None = None
    disabled: bool = False      # may not sign in; sessions and API keys refused (everything else stays)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_name(name: str) -> str:
    """A user name: 1-64 characters, no spaces, slashes or control characters."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AccountError(f"invalid user name {name!r}: use 1-64 characters without spaces, slashes "
                           "or control characters")
    return name


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"password too short: at least {MIN_PASSWORD} characters")
    return password


class Accounts:
    """The users table: add, remove, change password or role, verify a login."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def _account(row) -> Account | None:
        if row is None:
            return None
        return Account(id=row["id"], identifier=row["identifier"], role=row["role"], source=row["source"],
                       has_password=row["password_hash"] is not None, created_at=row["created_at"],
                       display_name=row["display_name"], disabled=row.get("disabled_at") is not None)

    def get(self, name: str) -> Account | None:
        """The account with this name, or None."""
        with self.db.connect() as c:
            return self._account(c.execute(users.select().where(users.c.identifier == name)).mappings().first())

    def get_by_id(self, user_id: str) -> Account | None:
        with self.db.connect() as c:
            return self._account(c.execute(users.select().where(users.c.id == user_id)).mappings().first())

    def list(self) -> list[Account]:
        """All accounts, by name."""
        with self.db.connect() as c:
            return [self._account(r) for r in c.execute(users.select().order_by(users.c.identifier)).mappings()]

    def add(self, name: str, password: str | None = None, *, role: str = "user", source: str = "password",
            display_name: str | None = None) -> Account:
        """Create an account; a password is hashed with argon2id. Raises AccountError if it exists."""
        check_name(name)
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}: use admin or user")
        digest = _HASHER.hash(check_password(password)) if password is not None else None
        from sqlalchemy.exc import IntegrityError

        try:
            with self.db.begin() as c:
                c.execute(users.insert().values(id=str(uuid.uuid4()), identifier=name, role=role,
                                                password_hash=digest, source=source, display_name=display_name,
                                                created_at=now_iso()))
        except IntegrityError:
            raise AccountError(f"user {name} already exists") from None
        return self.get(name)

    def ensure(self, name: str, *, role: str = "user", source: str) -> Account:
        """The account with this name, created on first sight (proxy header, OAuth, local mode)."""
        acct = self.get(name)
        if acct is not None:
            return acct
        try:
            acct = self.add(name, None, role=role, source=source)
            log.info("user %s created on first sight (%s, role %s)", name, source, role)
            return acct
        except AccountError:
            existing = self.get(name)   # created meanwhile by another request
            if existing is None:
                raise
            return existing

    def _require(self, name: str) -> Account:
        acct = self.get(name)
        if acct is None:
            raise AccountError(f"no user named {name}")
        return acct

    def set_password(self, name: str, password: str) -> None:
        """Set (or replace) a user's password."""
        self._require(name)
        digest = _HASHER.hash(check_password(password))
        with self.db.begin() as c:
            c.execute(users.update().where(users.c.identifier == name).values(password_hash=digest))

    def set_role(self, name: str, role: str) -> None:
        """Make a user admin or user."""
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}: use admin or user")
        self._require(name)
        with self.db.begin() as c:
            c.execute(users.update().where(users.c.identifier == name).values(role=role))

    def set_disabled(self, name: str, disabled: bool) -> Account:
        """Disable an account (it may not sign in; its session and API keys are refused on the next request)
        or enable it again. Its chats, groups, keys and shared records stay. The last enabled admin cannot be
        disabled. Returns the account as it is now."""
        acct = self._require(name)
        if disabled and acct.is_admin and not acct.disabled:
            admins = [a for a in self.list() if a.is_admin and not a.disabled]
            if len(admins) <= 1:
                raise AccountError(f"{name} is the last enabled admin: make another user an admin first")
        with self.db.begin() as c:
            c.execute(users.update().where(users.c.identifier == name)
                      .values(disabled_at=now_iso() if disabled else None))
        return self._require(name)

    def remove(self, name: str) -> Account:
        """Delete the account row and its group memberships (the caller deletes the user's threads first:
        see history). A knowledge base that names ``user:NAME`` forgets it, so a new account of the same
        name does not inherit its access."""
        acct = self._require(name)
        with self.db.begin() as c:
            c.execute(users.delete().where(users.c.id == acct.id))
            c.execute(memberships.delete().where(memberships.c.user_identifier == name))
            drop_principal(c, f"user:{name}")
        return acct

    def verify(self, name: str, password: str) -> Account | None:
        """The account if the password matches, else None. An unknown name costs the same time."""
        with self.db.connect() as c:
            row = c.execute(users.select().where(users.c.identifier == name)).mappings().first()
        digest = row["password_hash"] if row is not None else None
        try:
            _HASHER.verify(digest or _DUMMY_HASH, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if digest is None:
            return None
        if _HASHER.check_needs_rehash(digest):
            with self.db.begin() as c:
                c.execute(users.update().where(users.c.id == row["id"]).values(password_hash=_HASHER.hash(password)))
        return self._account(row)

    def password_users(self) -> int:
        """How many accounts can sign in with a password (login is on as soon as one can)."""
        with self.db.connect() as c:
            return c.execute(select(func.count()).select_from(users)
                             .where(users.c.password_hash.is_not(None))).scalar_one()


# ------------------------------------------------------------------------------ auth secret

SECRET_FILE = "auth-secret"


def auth_secret(data_dir: Path) -> str:
    """The JWT signing secret kept in the data dir: created once (owner-only permissions), reused after."""
    path = Path(data_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if len(value) < 32:
            raise KbchatError(f"{path} holds no usable secret: delete it to make a new one "
                              "(everybody will have to log in again)") from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return value
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    log.info("created the login secret %s (owner-only)", path)
    return value


# ------------------------------------------------------------------------------ rate limit


class LoginLimiter:
    """Failed logins per user name and per client address in a sliding window (in this process).

    ``blocked`` says whether a new attempt is refused; ``failed`` records a failure; a success clears
    the user name's failures (not the address's: one address guessing many names stays limited)."""

    def __init__(self, max_failures: int = 5, window: float = 900.0, per_address_factor: int = 4,
                 clock=time.monotonic):
        self.max_user = max_failures
        self.max_addr = max_failures * per_address_factor
        self.window = window
        self.clock = clock
        self._fails: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _count(self, key: str) -> int:
        q = self._fails.get(key)
        if not q:
            return 0
        cutoff = self.clock() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return len(q)

    def blocked(self, user: str, address: str | None) -> str | None:
        """Why an attempt is refused now ("user" or "address"), or None."""
        with self._lock:
            if self._count("u:" + user) >= self.max_user:
                return "user"
            if address and self._count("a:" + address) >= self.max_addr:
                return "address"
            return None

    def failed(self, user: str, address: str | None) -> None:
        with self._lock:
            now = self.clock()
            for key in ("u:" + user, "a:" + (address or "")):
                if key != "a:":
                    self._fails.setdefault(key, deque()).append(now)
            if len(self._fails) > 10_000:   # bound memory under a spray of names
                for k in [k for k, q in self._fails.items() if not q or q[-1] < now - self.window]:
                    del self._fails[k]

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop("u:" + user, None)


__all__ = ["Account", "AccountError", "Accounts", "LOCAL_USER", "LoginLimiter", "ROLES", "auth_secret",
           "check_name", "check_password"]

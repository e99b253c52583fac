"""Sign-in for the app: which mode is on, Chainlit's auth callbacks, the secret, the failed-login limit,
and the one place that turns a request's token into a user (checked against the database each time).

Modes (decided at start-up, logged):
- ``local``: no user has a password and KBCHAT_AUTH is not 'password': the single-user local app. The
  browser is signed in automatically as the user ``local`` (Chainlit's header-auth flow), so history
  works without a login page.
- ``password``: Chainlit's login page; accounts from ``kbchat users add``.
- ``header``: KBCHAT_AUTH_HEADER names a header an SSO proxy sets; users are created on first sight.
- ``oauth``: Chainlit's OAuth providers, configured by their own env vars (OAUTH_GITHUB_CLIENT_ID, ...).

Groups from the identity provider (KBCHAT_AUTH_GROUPS_HEADER, KBCHAT_OAUTH_GROUPS_CLAIM) replace the user's
'idp' memberships at each sign-in (hand-set ones stay). Every sign-in and refused sign-in goes to the audit
log with the client address; never a password.
"""

from __future__ import annotations

import asyncio
import contextvars
import os

import chainlit as cl
import chainlit.socket as cl_socket
from chainlit.auth import get_current_user as chainlit_current_user
from chainlit.auth.cookie import OAuth2PasswordBearerWithCookie
from chainlit.auth.jwt import decode_jwt
from chainlit.oauth_providers import get_configured_oauth_providers
from chainlit.user import PersistedUser
from fastapi import Depends, HTTPException
from sqlalchemy.exc import IntegrityError

from kbchat.records.access import Access, clean_idp_groups
from kbchat.records.accounts import LOCAL_USER, Account, AccountError, Accounts, auth_secret, check_name
from kbchat.ui import runtime
from kbchat.ui.runtime import log

# The signed-in account of the current request or socket event (set by current_user below).
CURRENT: contextvars.ContextVar[Account | None] = contextvars.ContextVar("kbchat_account", default=None)
# The client address of the current HTTP request (set by ClientAddress), for the login limit and logs.
CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("kbchat_client", default=None)


def decide_mode() -> str:
    """local | password | header | oauth, from the settings and the accounts in the database."""
    s = runtime.core_settings()
    if s.auth_header:
        return "header"
    if s.auth == "password":
        return "password"
    if s.auth == "auto" and Accounts(runtime.database()).password_users() > 0:
        return "password"
    if get_configured_oauth_providers():
        return "oauth"
    return "local"


MODE = decide_mode()
# The JWT secret Chainlit signs sessions with: CHAINLIT_AUTH_SECRET when set, else the data dir's file.
if not os.environ.get("CHAINLIT_AUTH_SECRET"):
    os.environ["CHAINLIT_AUTH_SECRET"] = auth_secret(runtime.core_settings().data_dir)
log.info("sign-in mode: %s", MODE)


def _accounts() -> Accounts:
    return Accounts(runtime.database())


def _user(acct: Account) -> cl.User:
    return cl.User(identifier=acct.identifier, display_name=acct.display_name, metadata={"role": acct.role})


def _shown(name: str) -> str:
    """A user name as it goes into a log line (no line breaks, bounded)."""
    return repr(name[:80])


def _audit(action: str, user: str | None, detail: dict) -> None:
    """One audit line for a sign-in or a refused one, with the client address (a failure is logged, never
    raised: the audit log must not decide whether someone signs in)."""
    try:
        who = "".join(ch for ch in (user or "")[:80] if ch.isprintable()) or None  # PostgreSQL refuses NUL
        Access(runtime.database()).record(action, who, None, detail, address=CLIENT.get())
    except Exception as err:  # noqa: BLE001 - the database refused: the log line says so
        log.warning("audit of %s for %s failed: %s", action, _shown(user or "-"), err)


def _signed_in(name: str, source: str, groups_raw=None, *, groups_from: str | None = None) -> Account | None:
    """Ensure the account, refresh its identity-provider groups (when a header or claim is configured:
    ``groups_from`` names it) and audit the sign-in; None for a disabled account. Runs in a worker thread."""
    acct = _accounts().ensure(name, role="user", source=source)
    if acct.disabled:
        log.warning("%s sign-in refused for %s: the account is disabled", source, _shown(name))
        _audit("login.failed", acct.identifier, {"mode": source, "reason": "account disabled"})
        return None
    detail: dict = {"mode": source}
    if groups_from is not None:
        names = clean_idp_groups(groups_raw, source=groups_from)
        access = Access(runtime.database())
        try:
            added, removed = access.set_idp_groups(acct.identifier, names)
        except IntegrityError:  # the same user's other sign-in request wrote them meanwhile: read again
            added, removed = access.set_idp_groups(acct.identifier, names)
        if added or removed:
            log.info("groups of %s from %s: +%s -%s", acct.identifier, groups_from, added, removed)
        detail.update(groups=names, **({"groups_added": added} if added else {}),
                      **({"groups_removed": removed} if removed else {}))
    _audit("login", acct.identifier, detail)
    return acct


if MODE == "local":
    @cl.header_auth_callback
    async def local_auth(headers) -> cl.User | None:
        acct = await asyncio.to_thread(_accounts().ensure, LOCAL_USER, role="admin", source="local")
        return _user(acct)

elif MODE == "header":
    @cl.header_auth_callback
    async def header_auth(headers) -> cl.User | None:
        s = runtime.core_settings()
        name = (headers.get(s.auth_header) or "").strip()
        if not name:
            log.warning("header sign-in refused from %s: no %s header", CLIENT.get(), s.auth_header)
            await asyncio.to_thread(_audit, "login.failed", None, {"mode": "header", "reason": "no header"})
            return None
        try:
            check_name(name)
        except AccountError as err:
            log.warning("header sign-in refused from %s: %s", CLIENT.get(), err)
            await asyncio.to_thread(_audit, "login.failed", name, {"mode": "header", "reason": "not a user name"})
            return None
        # An absent groups header means no groups: the proxy is trusted to send what the user has now.
        groups_from = f"header {s.auth_groups_header}" if s.auth_groups_header else None
        raw = headers.get(s.auth_groups_header) if s.auth_groups_header else None
        acct = await asyncio.to_thread(_signed_in, name, "header", raw, groups_from=groups_from)
        return _user(acct) if acct is not None else None

elif MODE == "password":
    @cl.password_auth_callback
    async def password_auth(username: str, password: str) -> cl.User | None:
        addr = CLIENT.get()
        limit = runtime.limiter()
        why = limit.blocked(username, addr)
        if why:
            log.warning("login refused for %s from %s: too many failed attempts (limit per %s)",
                        _shown(username), addr, "user name" if why == "user" else "client address")
            await asyncio.to_thread(_audit, "login.failed", username,
                                    {"mode": "password", "reason": f"rate limited (per {why})"})
            return None
        acct = await asyncio.to_thread(_accounts().verify, username, password)
        if acct is None:
            limit.failed(username, addr)
            log.warning("login failed for %s from %s", _shown(username), addr)
            await asyncio.to_thread(_audit, "login.failed", username,
                                    {"mode": "password", "reason": "wrong user name or password"})
            return None
        limit.succeeded(username)
        if acct.disabled:
            log.warning("login refused for %s from %s: the account is disabled", _shown(username), addr)
            await asyncio.to_thread(_audit, "login.failed", username,
                                    {"mode": "password", "reason": "account disabled"})
            return None
        log.info("login: %s (%s) from %s", acct.identifier, acct.role, addr)
        await asyncio.to_thread(_audit, "login", acct.identifier, {"mode": "password", "role": acct.role})
        return _user(acct)

if MODE == "oauth" or (MODE == "password" and get_configured_oauth_providers()):
    @cl.oauth_callback
    async def oauth_auth(provider_id: str, token: str, raw_user_data: dict, default_user: cl.User,
                         id_token: str | None = None) -> cl.User | None:
        try:
            check_name(default_user.identifier)
        except AccountError as err:
            log.warning("OAuth sign-in (%s) refused: %s", provider_id, err)
            await asyncio.to_thread(_audit, "login.failed", str(default_user.identifier or ""),
                                    {"mode": "oauth", "provider": provider_id, "reason": "not a user name"})
            return None
        claim = runtime.core_settings().oauth_groups_claim
        raw = (raw_user_data or {}).get(claim) if claim and isinstance(raw_user_data, dict) else None
        acct = await asyncio.to_thread(_signed_in, default_user.identifier, "oauth", raw,
                                       groups_from=f"OAuth claim {claim} ({provider_id})" if claim else None)
        return _user(acct) if acct is not None else None


_bearer = OAuth2PasswordBearerWithCookie(tokenUrl="/login", auto_error=False)


def _account_for_token(token: str | None) -> Account:
    if not token:
        raise HTTPException(status_code=401, detail="Unauthorized")
    try:
        claimed = decode_jwt(token)  # signature and expiry
    except Exception:
        raise HTTPException(status_code=401, detail="Invalid authentication token") from None
    acct = _accounts().get(claimed.identifier)
    # A removed or disabled account's token, or the local user's token once sign-in is on, is worth nothing.
    if acct is None or acct.disabled or (acct.source == "local") != (MODE == "local"):
        raise HTTPException(status_code=401, detail="Unauthorized")
    return acct


async def current_user(token: str | None = Depends(_bearer)) -> PersistedUser:
    """Every route's user: the token's account as the database has it now (role included).

    Replaces Chainlit's get_current_user, which re-creates an account missing from the data layer
    (a removed user's 15-day token kept working) and trusts the role stored in the token."""
    acct = await asyncio.to_thread(_account_for_token, token)
    CURRENT.set(acct)
    return PersistedUser(id=acct.id, identifier=acct.identifier, display_name=acct.display_name,
                         createdAt=acct.created_at, metadata={"role": acct.role})


def install() -> None:
    """Route every Chainlit and kbchat user lookup through current_user (HTTP: FastAPI's dependency
    override; socket: the name Chainlit's connect handler calls)."""
    from chainlit.server import app as cl_app

    cl_app.dependency_overrides[chainlit_current_user] = current_user
    cl_socket.get_current_user = current_user


install()


def is_admin(identifier: str | None) -> bool:
    """Whether this user name is an admin now (read from the database)."""
    if not identifier:
        return False
    acct = _accounts().get(identifier)
    return acct is not None and acct.is_admin

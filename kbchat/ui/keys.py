"""/keys in the chat: every signed-in user lists, creates and revokes their own API keys (a new key is
shown once); admins also anyone's (`--user NAME`, `/keys list all`). The role is read from the database
on every command; every change is audited with the client address."""

from __future__ import annotations

import chainlit as cl

from kbchat.errors import KbchatError
from kbchat.messages import t
from kbchat.records.keys import SCOPES, ApiKey, ApiKeys
from kbchat.ui import access
from kbchat.ui.auth import is_admin
from kbchat.ui.runtime import core

COMMAND = {"id": "keys", "icon": "key-round", "button": False, "persistent": False}


def command(lang: str) -> dict:
    """The /keys entry of the command menu, described in the UI language."""
    return dict(COMMAND, description=t(lang, "api_cmd_keys"))


def parse(message: cl.Message) -> list[str] | None:
    """The arguments of a /keys message (picked from the command menu or typed), or None."""
    text = (message.content or "").strip()
    typed = text == "/keys" or text.startswith(("/keys ", "/keys\n"))
    if (message.command or "") == "keys" or typed:
        return (text[5:] if typed else text).split()
    return None


def _options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """(--name value options, the other words)."""
    opts, rest, i = {}, [], 0
    while i < len(args):
        if args[i].startswith("--") and i + 1 < len(args):
            opts[args[i][2:]] = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    return opts, rest


def _row(lang: str, k: ApiKey, with_user: bool) -> str:
    state = t(lang, f"api_state_{k.state()}")
    who = f" · **{k.user}**" if with_user else ""
    return (f"- `{k.id}` · `{k.prefix}…`{who} · {', '.join(k.scopes)} · {state} · "
            f"{(k.expires_at or t(lang, 'api_never'))[:10]}" + (f" · {k.label}" if k.label else ""))


async def _say(text: str) -> None:
    await cl.Message(content=text).send()


async def on_command(args: list[str]) -> None:
    lang, user = access.chat_language(), access.chat_user()
    if not user:
        await _say(t(lang, "api_keys_signin"))
        return
    c = core()
    keys = ApiKeys(c.db)
    admin = await cl.make_async(is_admin)(user)
    opts, rest = _options(args)
    verb = rest[0] if rest else "list"
    if verb == "list":
        who = rest[1] if len(rest) > 1 else user
        if who != user and not admin:
            await _say(t(lang, "api_keys_admin_only"))
            return
        rows = await cl.make_async(keys.list)(None if who == "all" else who)
        if not rows:
            usage = t(lang, "api_keys_usage", scopes=", ".join(SCOPES))
            await _say(t(lang, "api_keys_none") + "\n\n" + usage)
            return
        lines = [t(lang, "api_keys_header", n=len(rows))] + [_row(lang, k, who == "all") for k in rows]
        await _say("\n".join(lines))
    elif verb == "create":
        owner = opts.get("user", user)
        if owner != user and not admin:
            await _say(t(lang, "api_keys_admin_only"))
            return
        if owner != user and await cl.make_async(c.accounts.get)(owner) is None:
            await _say(t(lang, "api_keys_no_user", name=owner))
            return
        try:
            key, rec = await cl.make_async(keys.create)(owner, label=" ".join(rest[1:]),
                                                        scopes=opts.get("scope"),
                                                        expires=opts.get("expires"), by=user)
        except KbchatError:
            await _say(t(lang, "api_keys_bad", scopes=", ".join(SCOPES)))
            return
        await access.audit("key.create", rec.id, {"user": owner, "scopes": list(rec.scopes)})
        await _say(t(lang, "api_keys_created", id=rec.id, user=owner, scopes=", ".join(rec.scopes),
                     expires=(rec.expires_at or t(lang, "api_never"))[:10]) + f"\n\n```\n{key}\n```")
    elif verb == "revoke" and len(rest) > 1:
        try:
            rec = await cl.make_async(keys.revoke)(rest[1], user=None if admin else user)
        except KbchatError:
            await _say(t(lang, "api_keys_no_such", id=rest[1]))
            return
        await access.audit("key.revoke", rec.id, {"user": rec.user})
        await _say(t(lang, "api_keys_revoked", id=rec.id))
    else:
        await _say(t(lang, "api_keys_usage", scopes=", ".join(SCOPES)))


__all__ = ["command", "on_command", "parse"]

"""/keys in the chat (kbchat/ui/keys.py) through the real handlers and core: a user creates a key (shown
once, the key verifies), lists and revokes only their own; an admin lists everybody's and makes one for
another user; each change is audited; the lines come in the user's language."""

from __future__ import annotations

import re

from tests.fixtures.handlers import say


def _as(ctx, name: str, lang: str = "en") -> None:
    import chainlit as cl

    ctx.session.user = cl.User(identifier=name)
    ctx.session.language = lang


def _last(ctx) -> str:
    return ctx.emitter.texts()[-1]


async def test_users_manage_their_own_keys_admins_anyones(ctx, app_module):
    from kbchat.records.keys import ApiKeys
    from kbchat.ui.runtime import core

    c = core()
    c.accounts.add("alice", "a long password 1")
    c.accounts.add("bob", "a long password 2")
    c.accounts.add("boss", "a long password 3", role="admin")
    keys = ApiKeys(c.db)

    _as(ctx, "alice")
    await say(app_module, "/keys")
    assert "You have no API keys yet." in _last(ctx)
    await say(app_module, "/keys create portal bot --scope chat,search --expires 30d")
    shown = _last(ctx)
    key = re.search(r"kbk_[\w-]+", shown).group(0)
    key_id = re.search(r"New API key `(\w+)` for alice", shown).group(1)
    found, why = keys.verify(key)
    assert why == "" and found.user == "alice" and found.label == "portal bot" and found.scopes == ("chat", "search")
    await say(app_module, "/keys")
    listing = _last(ctx)
    assert f"`{key_id}`" in listing and "active" in listing and key not in listing  # never shown again
    await say(app_module, "/keys create x --scope root")
    assert "Not made" in _last(ctx)
    await say(app_module, "/keys create x --user bob")
    assert "Only administrators" in _last(ctx)

    _as(ctx, "bob", "zh-TW")
    await say(app_module, f"/keys revoke {key_id}")
    assert f"您沒有 API 金鑰 `{key_id}`" in _last(ctx)
    assert keys.verify(key)[1] == ""
    await say(app_module, "/keys list alice")
    assert "只有管理員" in _last(ctx)

    _as(ctx, "boss")
    await say(app_module, "/keys create for-bob --user bob")
    assert "for bob" in _last(ctx)
    await say(app_module, "/keys list all")
    assert "**alice**" in _last(ctx) and "**bob**" in _last(ctx)
    _as(ctx, "alice")
    await say(app_module, f"/keys revoke {key_id}")
    assert f"`{key_id}` revoked" in _last(ctx)
    assert keys.verify(key)[1] == "revoked"
    actions = [(a["action"], a["user_identifier"]) for a in c.access.audit_log(action="key.*")]
    assert actions == [("key.create", "alice"), ("key.create", "boss"), ("key.revoke", "alice")]

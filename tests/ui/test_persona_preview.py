"""The console's preview link on the chat side: the chat's next start takes the one-time token from its
socket's cookies and runs with that persona (a draft too), for the admin who asked only, once."""

from __future__ import annotations

from tests.fixtures.handlers import answers as _answers
from tests.fixtures.handlers import say as _say


async def test_preview_token_opens_one_chat_with_a_draft_persona(ctx, app_module, stub):
    import chainlit as cl

    from kbchat.ui.admin import personas as page

    app = app_module
    c = app.core()
    c.accounts.add("boss", "boss-password-1", role="admin")
    c.accounts.add("bob", "bob-password-1")
    records = c.persona_cache.records
    draft = {**records.get("general").data, "id": "critic", "name": {"en": "Film critic"}}
    draft.pop("default")
    records.save(draft, by="boss", status="draft")
    assert "critic" not in c.personas
    page.PREVIEWS["tok-1"] = ("boss", "critic")
    ctx.session.user = cl.User(identifier="boss")
    ctx.session.environ = {"HTTP_COOKIE": "theme=dark; kbchat_preview=tok-1"}
    await app.on_chat_start()
    state = app.CHATS[ctx.session.id]
    assert state.persona_id == "critic" and state.preview.id == "critic"
    assert "_Preview of the persona Film critic (Draft): only you see this chat with it._" in ctx.emitter.texts()
    assert "tok-1" not in page.PREVIEWS  # once
    stub.mode = "ok"
    await _say(app, "Which film won?")
    final = _answers(ctx.emitter)[-1]["output"]
    assert final and "No persona is available" not in final
    # a token is taken only by the admin who asked for it
    page.PREVIEWS["tok-2"] = ("boss", "critic")
    assert page.take_preview("kbchat_preview=tok-2", "bob") is None and "tok-2" in page.PREVIEWS
    assert page.take_preview("kbchat_preview=tok-2", "boss") == "critic"

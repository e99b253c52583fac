"""The UI handlers (kbchat/ui/handlers.py) run in a Chainlit context with a recording emitter (notes §11b); real core, stub LLM."""

from __future__ import annotations

from tests.fixtures.handlers import answers as _answers
from tests.fixtures.handlers import say as _say
from tests.fixtures.handlers import upload as _upload


async def test_upload_answer_citations(ctx, app_module, pdf_factory, stub):
    app = app_module
    stub.mode = "ok"
    pdf = pdf_factory("zebra.pdf", ["Introduction to the zoo network.",
                                    "The zebra protocol uses port 7777 for all traffic. It is fast."])
    await app.on_chat_start()
    assert ctx.emitter.of("chat_settings") or ctx.session.chat_settings is not None
    el = await _upload(pdf)
    await _say(app, "What port does the zebra protocol use?", [el])
    texts = "\n".join(ctx.emitter.texts())
    assert "Indexed **zebra.pdf**: 2 pages" in texts
    final = _answers(ctx.emitter)[-1]
    assert "Source 1" in final["output"] and "According to" in final["output"]
    assert "zebra.pdf, page 2" in final["output"]
    els = [e for e in ctx.emitter.of("element") if e.get("name") == "Source 1" and e.get("forId") == final["id"]]
    assert els and els[0]["page"] == 2
    # the Source is the thread's own copy of the upload, served by kbchat's owner-checked route
    # (one copy per upload, never one per citation)
    assert els[0]["url"].startswith(f"/kbchat/upload/{ctx.session.thread_id}/") and not els[0]["chainlitKey"]
    assert "?passage=" in els[0]["url"]  # opened with the cited passage highlighted
    # the prompt sent to the LLM delimits the passage as data
    assert "port 7777" in str(stub.last_messages)


async def test_llm_failure_gives_search_only_answer(ctx, app_module, pdf_factory, stub):
    app = app_module
    pdf = pdf_factory("zebra.pdf", ["The zebra protocol uses port 7777."])
    await app.on_chat_start()
    await _say(app, "", [await _upload(pdf)])
    for mode, words in (("401", "API key"), ("404", "not served"), ("500", "failed"), ("cut", "cut off")):
        stub.mode = mode
        await _say(app, "Which port does zebra use?")
        final = _answers(ctx.emitter)[-1]["output"]
        assert words in final, (mode, final)
        assert "Source 1" in final and "Traceback" not in final
    stub.mode = "ok"
    await _say(app, "Which port does zebra use?")
    assert "According to" in _answers(ctx.emitter)[-1]["output"]


async def test_unsupported_and_broken_files_get_one_line(ctx, app_module, tmp_path):
    app = app_module
    await app.on_chat_start()
    zipped = tmp_path / "notes.zip"
    zipped.write_bytes(b"PK\x03\x04 not really")
    fake = tmp_path / "fake.pdf"
    fake.write_text("not a pdf")
    await _say(app, "", [await _upload(zipped, mime="application/zip"), await _upload(fake)])
    texts = "\n".join(ctx.emitter.texts())
    assert ("**notes.zip** was not indexed: only PDF, Office (.docx .pptx .xlsx .odt), Markdown and text "
            "files can be added.") in texts
    assert "**fake.pdf** was not indexed: not a PDF" in texts


async def test_text_upload_is_cited_with_its_passage(ctx, app_module, tmp_path, stub):
    """A Markdown/text upload has no PDF: its Source shows the passage itself; PDF Sources carry the
    passage id so the PDF opens with it highlighted."""
    app = app_module
    stub.mode = "ok"
    await app.on_chat_start()
    md = tmp_path / "runbook.md"
    md.write_text("# Runbook\n\nThe gamma service restarts every night at 03:15.\n", encoding="utf-8")
    await _say(app, "", [await _upload(md, mime="text/markdown")])
    await _say(app, "When does the gamma service restart?")
    final = _answers(ctx.emitter)[-1]
    assert "runbook.md, page 1" in final["output"]
    (el,) = [e for e in ctx.emitter.of("element") if e.get("name") == "Source 1" and e.get("forId") == final["id"]]
    assert el["type"] == "text" and el["url"].startswith(f"/kbchat/upload/{ctx.session.thread_id}/")
    assert "?passage=" in el["url"]
    assert app.core().history.uploads(ctx.session.thread_id)[0]["path"].endswith(".md")


async def test_reasoning_setting_streams_thinking_step(ctx, app_module, pdf_factory, stub):
    app = app_module
    pdf = pdf_factory("zebra.pdf", ["The zebra protocol uses port 7777."])
    await app.on_chat_start()
    await _say(app, "", [await _upload(pdf)])
    stub.mode = "reasoning_content"
    ctx.session.chat_settings = {**(ctx.session.chat_settings or {}), "reasoning": True}
    await _say(app, "Which port?")
    steps = [d for e, d in ctx.emitter.events if e in ("new_message", "stream_start") and d.get("name") == "Thinking"]
    assert steps, "no thinking step"
    final = _answers(ctx.emitter)[-1]["output"]
    assert "Let me look" not in final and "According to" in final
    stub.mode = "ok"


async def test_follow_up_uses_history(ctx, app_module, pdf_factory, stub):
    app = app_module
    stub.mode = "ok"
    pdf = pdf_factory("gpus.pdf", ["The A100 GPU has 80 GB of memory. The A100 TDP is 400 W.",
                                   "The T400 card is a small workstation GPU with 4 GB."])
    await app.on_chat_start()
    await _say(app, "", [await _upload(pdf)])
    await _say(app, "How much memory does the A100 have?")
    await _say(app, "and its TDP?")
    last = stub.last_messages
    roles = [m["role"] for m in last]
    assert roles.count("user") >= 2 and "assistant" in roles  # history went to the LLM
    state = app.CHATS[ctx.session.id]
    from kbchat.search.retrieve import search_query

    assert search_query("and its TDP?", state.history[:2]).startswith("How much memory")


async def test_chat_state_released_only_when_session_is_gone_uploads_stay(ctx, app_module, pdf_factory,
                                                                          monkeypatch):
    app = app_module
    monkeypatch.setattr(app, "RELEASE_POLL_SECONDS", 0.01)
    await app.on_chat_start()
    await _say(app, "", [await _upload(pdf_factory("zebra.pdf", ["The zebra protocol uses port 7777."]))])
    sid = ctx.session.id
    name = app.CHATS[sid].collection
    store = app.core().store
    assert name in store.names()
    # Chainlit still knows the session (a transient drop that reconnected on another socket): keep it
    from chainlit.session import WebsocketSession

    with monkeypatch.context() as m:
        m.setattr(WebsocketSession, "get_by_id", classmethod(lambda cls, i: type("S", (), {"socket_id": "new"})()))
        await app._release_when_gone(sid, "old")
    assert sid in app.CHATS and name in store.names()
    # the session is really deleted (New chat, timeout): its state goes, the thread's uploads stay
    # (they are deleted only with the thread)
    await app._release_when_gone(sid, "old")
    assert sid not in app.CHATS and name in store.names()
    assert app.core().history.uploads(ctx.session.thread_id)[0]["name"] == "zebra.pdf"


def test_streamed_tokens_are_coalesced_and_none_is_lost(app_module, monkeypatch):
    """An answer streams its first token at once and then, per STREAM_EVERY, what came meanwhile in one
    socket.io event (one event per LLM token loaded the event loop of a replica with 100 chats); the pieces
    join to exactly the tokens given."""
    import asyncio

    class Target:
        def __init__(self):
            self.sent = []

        async def stream_token(self, piece):
            self.sent.append(piece)

    async def run():
        target, out = Target(), app_module._Coalesce()
        for tok in ["The", " office", " opens", " at", " 9."]:
            await out.put(target, tok)
        first = list(target.sent)
        await out.flush()
        await out.flush()  # nothing left: nothing sent
        return first, target.sent

    monkeypatch.setattr(app_module, "STREAM_EVERY", 3600)  # all but the first token wait for the flush
    first, sent = asyncio.run(run())
    assert first == ["The"] and sent == ["The", " office opens at 9."]
    monkeypatch.setattr(app_module, "STREAM_EVERY", 0)  # no coalescing: every token its own event
    first, sent = asyncio.run(run())
    assert sent == ["The", " office", " opens", " at", " 9."]


async def test_a_question_sent_while_the_chat_resumes_waits_for_the_resume(ctx, app_module, pdf_factory, stub):
    """Chainlit runs on_chat_resume beside the first message of a reopened chat: a question typed at
    once is answered in the resumed chat (its history and uploads), not in a fresh one."""
    import asyncio

    app = app_module
    stub.mode = "ok"
    pdf = pdf_factory("heron.pdf", ["The heron gate closes at 6 pm on weekdays."])
    await app.on_chat_start()
    await _say(app, "", [await _upload(pdf)])
    await _say(app, "When does the heron gate close?")
    sid = ctx.session.id
    del app.CHATS[sid]  # the tab is reopened: a new connection, the state is set up by the resume
    ctx.session.thread_id_to_resume = ctx.session.thread_id
    started = []
    real_start = app.on_chat_start

    async def spy_start():
        started.append(1)
        await real_start()

    app.on_chat_start = spy_start

    async def resume_late():
        await asyncio.sleep(0.5)
        await app.on_chat_resume({"id": ctx.session.thread_id, "metadata": {}})

    try:
        await asyncio.gather(_say(app, "And on Sundays?"), resume_late())
    finally:
        app.on_chat_start = real_start
        ctx.session.thread_id_to_resume = None
    assert not started
    state = app.CHATS[sid]
    assert ("user", "When does the heron gate close?") in state.history  # the resumed chat's history
    assert "heron.pdf, page 1" in _answers(ctx.emitter)[-1]["output"]  # its upload is searched

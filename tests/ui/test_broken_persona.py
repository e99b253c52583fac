"""A knowledge folder lacking a base that a shipped persona names (issue 23's first defect): the other
personas keep working, the broken ones are left out of the menu with one log line each giving the reason."""

from __future__ import annotations

import logging

from tests.fixtures.handlers import answers as _answers
from tests.fixtures.handlers import say as _say


async def test_persona_naming_a_missing_base_is_left_out_and_the_others_answer(ctx, app_module, tmp_path,
                                                                                monkeypatch, stub, caplog):
    empty = tmp_path / "knowledge-without-clinic"
    empty.mkdir()
    monkeypatch.setenv("KBCHAT_KNOWLEDGE_DIR", str(empty))
    logger = logging.getLogger("kbchat")
    logger.addHandler(caplog.handler)
    try:
        app = app_module
        profiles = await app.chat_profiles(None, "en")
        assert [p.name for p in profiles] == ["general", "analyst"]
        c = app.core()
        assert set(c.broken) == {"clinic-qpl", "doctor"}
        assert c.broken["doctor"] == ("field 'knowledge': unknown knowledge base 'clinic' (known: default); "
                                      "create it with `kbchat kb create clinic`")
        lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
        assert len(lines) == 2 and all("\n" not in line for line in lines)
        assert any("'doctor'" in line and "unknown knowledge base 'clinic'" in line for line in lines)
        # a chat asked for the broken persona runs with the default one, and answers
        stub.mode = "ok"
        ctx.session.chat_profile = "doctor"
        await app.on_chat_start()
        await _say(app, "What does the handbook say about holidays?")
        final = _answers(ctx.emitter)[-1]["output"]
        assert final and "Traceback" not in final
        assert app.CHATS[ctx.session.id].persona_id == "general"
    finally:
        logger.removeHandler(caplog.handler)

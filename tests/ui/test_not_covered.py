"""Issue 27: a question the documents do not cover is told so in the user's language, the closest passages
are still listed (marked as such), and the answer record's not_covered flag says so (real core, stub LLM)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.handlers import answers as _answers
from tests.fixtures.handlers import say as _say
from tests.fixtures.handlers import upload as _upload

LEAFLETS = Path(__file__).resolve().parents[1] / "eval" / "leaflets"


async def test_uncovered_question_is_told_so_and_flagged(ctx, app_module, stub):
    from kbchat.ui import runtime

    app = app_module
    stub.mode = "ok"
    await app.on_chat_start()
    els = [await _upload(LEAFLETS / n) for n in ("en-colonoscopy-preparation.pdf", "zhtw-flu-vaccine.pdf")]
    await _say(app, "", els)

    # in the user's language: a Traditional Chinese browser (asked first: a short question is searched
    # together with the one before it)
    ctx.session.language = "zh-TW"
    await _say(app, "健保卡遺失要怎麼補辦？")
    assert "文件中沒有涵蓋這個問題的內容" in _answers(ctx.emitter)[-1]["output"]
    ctx.session.language = "en"

    await _say(app, "What are the visiting hours on the hospital ward?")
    uncovered = _answers(ctx.emitter)[-1]
    assert "The documents do not cover this question" in uncovered["output"]
    assert "Closest passages (they do not answer the question)" in uncovered["output"]
    assert "Source 1" in uncovered["output"]  # the closest passages are still there to open

    await _say(app, "What can I drink the day before my colonoscopy?")
    covered = _answers(ctx.emitter)[-1]
    assert "do not cover" not in covered["output"] and "According to" in covered["output"]


    records = dict(runtime.core().history.answers(ctx.session.thread_id))
    assert records[uncovered["id"]]["not_covered"] is True
    assert records[covered["id"]]["not_covered"] is False


async def test_search_only_answer_also_says_not_covered(ctx, app_module, stub):
    app = app_module
    await app.on_chat_start()
    await _say(app, "", [await _upload(LEAFLETS / "en-colonoscopy-preparation.pdf")])
    stub.mode = "500"
    await _say(app, "How do I renew my prescription online?")
    final = _answers(ctx.emitter)[-1]["output"]
    assert "The documents do not cover this question" in final and "Closest passages" in final
    stub.mode = "ok"

"""Usage figures (kbchat.records.usage) on both database engines: counts per day, persona, base and user,
thumbs, search-only, latency percentiles, the most cited documents, and the unanswered questions grouped by
similar wording (English and Chinese, with the BM25 analyser the app passes)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import insert

from kbchat.records.database import answers, feedbacks
from kbchat.records.history import History
from kbchat.records.usage import group_similar, percentile, usage_report
from kbchat.search.lexical import analyze_query


def _answer(db, question: str, *, day: date, thumb: int | None = None, **fields) -> None:
    aid = str(uuid.uuid4())
    rec = {"question": question, "answer": "a", "persona_id": fields.pop("persona", "general"),
           "user": fields.pop("user", "bob"), "bases": fields.pop("bases", ["shared"]),
           "asked_at": datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc).isoformat(), **fields}
    History(db).save_answer(aid, "t1", rec)
    with db.begin() as c:  # recorded on that day
        c.execute(answers.update().where(answers.c.id == aid).values(created_at=rec["asked_at"]))
    if thumb is not None:
        with db.begin() as c:
            c.execute(insert(feedbacks).values(id=str(uuid.uuid4()), for_id=aid, thread_id="t1", value=thumb))


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([5], 95) == 5
    assert percentile(list(range(1, 101)), 50) == 50 and percentile(list(range(1, 101)), 95) == 95
    assert percentile([300, 100, 200], 50) == 200


def test_similar_wordings_are_grouped_and_different_questions_are_not():
    qs = ["How do I reset my password?", "how to reset a password", "Reset password how?",
          "What is the password policy?", "病人跌倒怎麼辦？", "病人跌倒了怎麼辦", "病人發燒怎麼辦？",
          "visiting hours?", "When are visiting hours", "???"]
    groups = [sorted(qs[i] for i in g) for g in group_similar(qs, words=analyze_query)]
    assert sorted(["How do I reset my password?", "how to reset a password", "Reset password how?"]) in groups
    assert sorted(["病人跌倒怎麼辦？", "病人跌倒了怎麼辦"]) in groups
    assert sorted(["visiting hours?", "When are visiting hours"]) in groups
    assert ["What is the password policy?"] in groups and ["病人發燒怎麼辦？"] in groups and ["???"] in groups
    assert sum(len(g) for g in groups) == len(qs)
    assert group_similar([]) == [] and group_similar(["one"]) == [[0]]


def test_usage_report_counts(db):
    today = datetime.now(timezone.utc).date()
    old = today - timedelta(days=40)
    _answer(db, "outside the period", day=old)
    _answer(db, "How do I reset my password?", day=today, not_covered=True, total_ms=100, first_token_ms=10)
    _answer(db, "how to reset a password", day=today, thumb=0, total_ms=300, first_token_ms=30,
            sources=[{"file": "it.pdf", "collection": "kb-it"}], bases=["shared", "kb-it"], user="carol")
    _answer(db, "Where is ward 3?", day=today - timedelta(days=1), thumb=1, total_ms=200, first_token_ms=20,
            persona="clinic", sources=[{"file": "map.pdf", "collection": "kb-clinic"},
                                       {"file": "it.pdf", "collection": "kb-it"}], bases=["kb-clinic"])
    _answer(db, "Triage?", day=today, search_only=True, persona="clinic", bases=["kb-clinic"])
    base_of = {"shared": "default", "kb-it": "it", "kb-clinic": "clinic"}.get
    rep = usage_report(db, today - timedelta(days=6), today, base_of=base_of, words=analyze_query)
    assert rep.questions == 4 and len(rep.per_day) == 7
    assert rep.per_day[-1] == (today.isoformat(), 3) and rep.per_day[-2][1] == 1
    assert dict((p, (n, f)) for p, n, f in rep.per_persona) == {"general": (2, 0), "clinic": (2, 1)}
    assert dict(rep.per_base) == {"default": 2, "it": 1, "clinic": 2}
    assert {u: (n, up, down) for u, n, up, down in rep.per_user} == {"bob": (3, 1, 0), "carol": (1, 0, 1)}
    assert (rep.thumbs_up, rep.thumbs_down, rep.search_only, rep.not_covered) == (1, 1, 1, 1)
    assert rep.cited[0] == ("it", "it.pdf", 2) and ("clinic", "map.pdf", 1) in rep.cited
    assert rep.latency == {"first_p50": 20, "first_p95": 30, "total_p50": 200, "total_p95": 300}
    [group] = rep.unanswered  # the not-covered one and the thumbs-down one: one wording group
    assert (group.count, group.no_passage, group.thumbs_down) == (2, 1, 1)
    assert group.question in ("How do I reset my password?", "how to reset a password")
    empty = usage_report(db, old - timedelta(days=100), old - timedelta(days=90))
    assert empty.questions == 0 and empty.latency["total_p50"] is None and empty.unanswered == []

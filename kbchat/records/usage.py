"""Usage figures read from the answer records (every answer leaves one, search-only ones included: see
``usage_fields`` in kbchat/ui/handlers.py) and the thumbs of the feedback table: questions per day, per
persona, per knowledge base and per user, search-only fallbacks, thumbs rates, the questions the knowledge
did not answer (no passage found, or thumbs down) grouped by similar wording, the most cited documents, and
answer latency percentiles. Read-only; one query per report."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from kbchat.records.database import Database, answers, feedbacks

# Questions grouped as "the same" when the cosine similarity of their terms (TF-IDF: words without stop
# words, plus character 4-grams of Latin words so "visit"/"visiting" meet) is at least this, average linkage:
# "How do I reset my password?" meets "how to reset a password", 病人跌倒怎麼辦 meets 病人跌倒了怎麼辦, while
# "What is the password policy?" (0.48) and 病人發燒怎麼辦 (0.41) stay apart.
SIMILAR = 0.5
_WORD = re.compile(r"[^\W_]+")
MAX_GROUPED = 2000   # the newest unanswered questions grouped (quadratic in their number)


@dataclass
class Unanswered:
    """A group of similar questions the knowledge did not answer."""

    question: str                     # the group's most frequent wording (or its first)
    count: int
    no_passage: int                   # of which no passage was found (not_covered)
    thumbs_down: int
    personas: list[str]
    last: str
    examples: list[str] = field(default_factory=list)


@dataclass
class UsageReport:
    """The figures of one period."""

    since: str
    until: str
    questions: int = 0
    per_day: list[tuple[str, int]] = field(default_factory=list)
    per_persona: list[tuple[str, int, int]] = field(default_factory=list)    # persona, questions, search-only
    per_base: list[tuple[str, int]] = field(default_factory=list)
    per_user: list[tuple[str, int, int, int]] = field(default_factory=list)  # user, questions, up, down
    search_only: int = 0
    not_covered: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    unanswered: list[Unanswered] = field(default_factory=list)
    cited: list[tuple[str, str, int]] = field(default_factory=list)           # base, file, citations
    latency: dict[str, int | None] = field(default_factory=dict)              # first_token/total p50/p95 (ms)

    @property
    def rated(self) -> int:
        return self.thumbs_up + self.thumbs_down


def percentile(values: list[int], q: float) -> int | None:
    """The q-th percentile (0-100) by the nearest-rank method; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return int(ordered[int(rank) - 1])


def simple_words(text: str) -> list[str]:
    """Lower-cased words (the caller may pass a better analyser: the app passes the BM25 one, which segments
    Chinese with jieba and drops question particles)."""
    return _WORD.findall(text.casefold())


def _terms(words: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    def terms(text: str) -> list[str]:
        out = []
        for w in words(text):
            if w in ENGLISH_STOP_WORDS:
                continue
            out.append(w)
            if w.isascii() and len(w) > 3:
                bounded = f"<{w}>"
                out += ["#" + bounded[i:i + 4] for i in range(len(bounded) - 3)]
        return out

    return terms


def group_similar(questions: list[str], threshold: float = SIMILAR,
                  words: Callable[[str], list[str]] = simple_words) -> list[list[int]]:
    """Indexes of ``questions`` grouped by similar wording (largest group first): TF-IDF of their terms
    (``words`` without English stop words, plus character 4-grams of Latin words), agglomerative clustering
    on cosine distance with average linkage."""
    if len(questions) < 2:
        return [[i] for i in range(len(questions))]
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vectors = TfidfVectorizer(analyzer=_terms(words), sublinear_tf=True).fit_transform(questions)
    except ValueError:  # no term at all (only stop words or punctuation)
        return [[i] for i in range(len(questions))]
    if vectors.shape[1] == 0 or (vectors.getnnz(axis=1) == 0).any():
        # a question without any term has no direction: keep those alone, group the others
        empty = [i for i in range(len(questions)) if vectors[i].nnz == 0]
        rest = [i for i in range(len(questions)) if vectors[i].nnz > 0]
        return sorted([[rest[j] for j in g] for g in group_similar([questions[i] for i in rest], threshold, words)]
                      + [[i] for i in empty], key=lambda g: (-len(g), g[0]))
    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=1 - threshold, metric="cosine",
                                     linkage="average").fit_predict(vectors.toarray())
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def _day(value: str | date | datetime) -> str:
    return value.isoformat()[:10] if isinstance(value, (date, datetime)) else str(value)[:10]


def usage_report(db: Database, since: date, until: date, *, base_of: Callable[[str], str | None] = lambda c: c,
                 words: Callable[[str], list[str]] = simple_words, top: int = 50) -> UsageReport:
    """The figures of the answers recorded from ``since`` to ``until`` (UTC days, both included).
    ``base_of`` names the knowledge base of a collection (None: not a base, e.g. a chat's uploads); ``words``
    splits a question into words (group_similar)."""
    start = datetime.combine(since, datetime.min.time(), tzinfo=timezone.utc).isoformat()
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc).isoformat()
    q = (select(answers.c.created_at, answers.c.record, feedbacks.c.value)
         .select_from(answers.outerjoin(feedbacks, feedbacks.c.for_id == answers.c.id))
         .where(answers.c.created_at >= start[:19], answers.c.created_at < end[:19])
         .order_by(answers.c.created_at))
    with db.connect() as c:
        rows = c.execute(q).all()
    rep = UsageReport(since=_day(since), until=_day(until))
    days: Counter = Counter()
    persona: Counter = Counter()
    persona_fallback: Counter = Counter()
    bases: Counter = Counter()
    users: dict[str, list[int]] = {}
    cited: Counter = Counter()
    first_ms: list[int] = []
    total_ms: list[int] = []
    missed: list[tuple[str, dict, int | None, str]] = []
    for created, record, thumb in rows:
        rec = record if isinstance(record, dict) else {}
        rep.questions += 1
        days[str(rec.get("asked_at") or created)[:10]] += 1
        pid = str(rec.get("persona_id") or "-")
        persona[pid] += 1
        if rec.get("search_only"):
            rep.search_only += 1
            persona_fallback[pid] += 1
        if rec.get("not_covered"):
            rep.not_covered += 1
        for coll in rec.get("bases") or []:
            name = base_of(str(coll))
            if name:
                bases[name] += 1
        u = users.setdefault(str(rec.get("user") or "-"), [0, 0, 0])
        u[0] += 1
        if thumb is not None:
            if int(thumb) > 0:
                rep.thumbs_up += 1
                u[1] += 1
            else:
                rep.thumbs_down += 1
                u[2] += 1
        for s in rec.get("sources") or []:
            if isinstance(s, dict) and s.get("file"):
                cited[(base_of(str(s.get("collection") or "")) or "", str(s["file"]))] += 1
        if isinstance(rec.get("first_token_ms"), (int, float)):
            first_ms.append(int(rec["first_token_ms"]))
        if isinstance(rec.get("total_ms"), (int, float)):
            total_ms.append(int(rec["total_ms"]))
        if (rec.get("not_covered") or (thumb is not None and int(thumb) == 0)) and str(rec.get("question", "")).strip():
            missed.append((str(rec["question"]).strip(), rec, thumb, str(created)))
    n_days = (until - since).days + 1
    rep.per_day = [(d, days.get(d, 0)) for d in ((since + timedelta(days=i)).isoformat() for i in range(n_days))]
    rep.per_persona = [(p, n, persona_fallback.get(p, 0)) for p, n in persona.most_common()]
    rep.per_base = bases.most_common()
    rep.per_user = sorted(((u, *v) for u, v in users.items()), key=lambda r: (-r[1], r[0]))
    rep.cited = [(b, f, n) for (b, f), n in cited.most_common(top)]
    rep.latency = {"first_p50": percentile(first_ms, 50), "first_p95": percentile(first_ms, 95),
                   "total_p50": percentile(total_ms, 50), "total_p95": percentile(total_ms, 95)}
    missed = missed[-MAX_GROUPED:]
    for group in group_similar([m[0] for m in missed], words=words)[:top]:
        items = [missed[i] for i in group]
        wording = Counter(m[0] for m in items)
        rep.unanswered.append(Unanswered(
            question=wording.most_common(1)[0][0], count=len(items),
            no_passage=sum(1 for m in items if m[1].get("not_covered")),
            thumbs_down=sum(1 for m in items if m[2] is not None and int(m[2]) == 0),
            personas=sorted({str(m[1].get("persona_id") or "-") for m in items}),
            last=max(m[3] for m in items), examples=[w for w, _ in wording.most_common(4)]))
    return rep


__all__ = ["MAX_GROUPED", "SIMILAR", "Unanswered", "UsageReport", "group_similar", "percentile", "simple_words",
           "usage_report"]

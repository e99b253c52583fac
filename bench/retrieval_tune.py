"""Fusion-weight grid and relevance-floor features for bench/retrieval.py's sets (issue 27), from the ranked
lists captured once per question: `python bench/retrieval_tune.py` (after `python bench/retrieval.py --reuse`
built the stores)."""

from __future__ import annotations

import itertools
import json
import pickle
import sys
from pathlib import Path

from _common import WORK
from retrieval import SETS, build

from kbchat.evaluate import load_questions, score
from kbchat.search import retrieve


def capture(cache: Path) -> dict:
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    stores, out = {}, {}
    for name, (qpath, corpus) in SETS.items():
        if corpus not in stores:
            stores[corpus] = build(corpus, True)
        s, emb, _, kb = stores[corpus]
        for q in load_questions(qpath):
            text = q["question"]
            query = kb.multilingual.encode_query(text)
            lists = {"dense": kb.dense_ids(emb.encode_query(text), 40),
                     "lex": kb.lexical_ids(text, 40), "ml": kb.multilingual_ids(query, 40)}
            ids = {pid for lst in lists.values() for pid, _ in lst}
            ps = kb.passages(list(ids))
            out[(name, q["id"])] = (q, lists, {pid: (p.source, p.page, p.text) for pid, p in ps.items()})
    cache.write_bytes(pickle.dumps(out))
    return out


def fused_top(lists, wd, wl, wm, k=5):
    f = retrieve.rrf([([p for p, _ in lists["dense"]], wd), ([p for p, _ in lists["lex"]], wl),
                      ([p for p, _ in lists["ml"]], wm)])
    return sorted(f, key=lambda p: -f[p])[:k]


def evaluate(data, set_name, wfun):
    qs, results = [], {}
    for (name, _), (q, lists, texts) in data.items():
        if name != set_name:
            continue
        qs.append(q)
        wd, wl, wm = wfun(q["question"])
        results[q["id"]] = [{"source": texts[p][0], "page": texts[p][1], "text": texts[p][2]}
                            for p in fused_top(lists, wd, wl, wm)]
    return score(qs, results, 5)["groups"]


def main() -> None:
    data = capture(WORK / "retrieval-tune.pkl")
    if "--features" in sys.argv:
        for (name, qid), (q, lists, _) in sorted(data.items()):
            top_ml = lists["ml"][0][1] if lists["ml"] else 0
            top_lex = lists["lex"][0][1] if lists["lex"] else 0
            print(json.dumps({"set": name, "id": qid, "lang": q["lang"], "ans": q["answerable"],
                              "cjk": round(retrieve.cjk_share(q["question"]), 2),
                              "ml": round(top_ml, 3), "lex": round(top_lex, 2)}))
        return
    for en_ml, cjk_ml, en_d, lw in itertools.product([0, 0.3, 0.6, 1.0], [0.5, 1.0, 1.5, 2.5],
                                                     [0.6], [1.5]):
        def wfun(question):
            sh = retrieve.cjk_share(question)
            return en_d * (1 - sh), lw, en_ml * (1 - sh) + cjk_ml * sh
        row = []
        for name in SETS:
            g = evaluate(data, name, wfun)
            row += [f"{g.get(k, {}).get('hit@5', float('nan')):.3f}" for k in
                    ("same-lingual,lang=en", "same-lingual,lang=zh-CN", "same-lingual,lang=zh-TW", "cross-lingual")]
        print(f"ml_en={en_ml} ml_cjk={cjk_ml} | " + " ".join(row))


if __name__ == "__main__" and "--floor" not in sys.argv:
    main()


def floor_features() -> list[dict]:
    """(answerable, CJK, top multilingual cosine, word and base coverage) per question of the three sets."""
    stores, rows = {}, []
    for name, (qpath, corpus) in SETS.items():
        if corpus not in stores:
            stores[corpus] = build(corpus, True)
        s, emb, _, kb = stores[corpus]
        for q in load_questions(qpath):
            hits = retrieve.search([kb], emb, q["question"], k=5, candidate_k=s.candidate_k)
            top = kb.multilingual_ids(kb.multilingual.encode_query(q["question"]), 1)
            words, base = retrieve.relevance_evidence(q["question"], hits, [kb])
            rows.append({"set": name, "id": q["id"], "lang": q["lang"], "ans": q["answerable"],
                         "cjk": retrieve.cjk_share(q["question"]) > 0.5, "ml": top[0][1] if top else 0.0,
                         "cov": words, "base": base})
    return rows


def calibrate(rows: list[dict]) -> None:
    """Per language group: the (a, b) whose floor (the 5th percentile of answerable scores) catches most
    unanswerable questions."""
    for cjk in (False, True):
        ans = [r for r in rows if r["cjk"] == cjk and r["ans"]]
        unans = [r for r in rows if r["cjk"] == cjk and not r["ans"]]
        best = []
        grid = [0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]
        for a, b in itertools.product(grid, grid):
            z = sorted(r["ml"] + a * r["cov"] + b * r["base"] for r in ans)
            floor = z[int(0.05 * len(ans))]
            caught = sum(r["ml"] + a * r["cov"] + b * r["base"] < floor for r in unans)
            wrong = sum(v < floor for v in z)
            best.append((caught, -wrong, a, b, round(floor, 3)))
        best.sort(reverse=True)
        print("CJK" if cjk else "en", f"{len(unans)} unanswerable, {len(ans)} answerable; best (caught, -wrong, "
              f"a, b, floor):", best[:3])


if __name__ == "__main__" and "--floor" in sys.argv:
    calibrate(floor_features())

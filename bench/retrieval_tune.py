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


CALIBRATION = ("dev", "heldout", "leaflets")  # the floor set (questions-floor.jsonl) only judges


def floor_features() -> list[dict]:
    """Per question of the calibration sets: answerable?, CJK?, the multilingual cosine of the closest
    passage and whether that passage is in the other script, MiniLM's closest cosine, word and base coverage."""
    stores, rows = {}, []
    for name in CALIBRATION:
        qpath, corpus = SETS[name]
        if corpus not in stores:
            stores[corpus] = build(corpus, True)
        s, emb, _, kb = stores[corpus]
        for q in load_questions(qpath):
            text = q["question"]
            hits = retrieve.search([kb], emb, text, k=5, candidate_k=s.candidate_k)
            top = kb.multilingual_ids(kb.multilingual.encode_query(text), 1)
            dense = kb.dense_ids(emb.encode_query(text), 1)
            top_text = kb.passages([top[0][0]])[top[0][0]].text if top else ""
            words, base = retrieve.relevance_evidence(text, hits, [kb])
            share = retrieve.cjk_share(text)
            cjk, one = share > 0.5, abs(share - 0.5) >= 0.15
            rows.append({"set": name, "id": q["id"], "lang": q["lang"], "ans": q["answerable"], "cjk": cjk,
                         "ml": top[0][1] if top else 0.0, "de": dense[0][1] if dense else 0.0,
                         "xs": one and bool(top) and (retrieve.cjk_share(top_text) > 0.5) != cjk, "one": one,
                         "cov": words, "base": base})
    return rows


def covered(r: dict, a: float, b: float, floor: float, cross: float, dense: float) -> bool:
    """retrieve.is_covered's rule on a feature row."""
    return (r["ml"] + a * r["cov"] + b * r["base"] >= floor or (r["xs"] and r["ml"] >= cross)
            or (not r["cjk"] and r["one"] and r["de"] >= dense))


def calibrate(rows: list[dict]) -> None:
    """Per language group (CJK or not): the parameters that tell the most unanswerable questions while at
    most 5% of the answerable ones of each language in the group are wrongly told."""
    grid = [0, 0.05, 0.1, 0.2, 0.3, 0.5]
    floors = [x / 1000 for x in range(300, 700, 5)]
    crosses = [x / 100 for x in range(30, 60, 2)]
    for cjk in (False, True):
        group = [r for r in rows if r["cjk"] == cjk]
        langs = sorted({r["lang"] for r in group})
        unans = [r for r in group if not r["ans"]]
        best = []
        for a, b, floor, cross in itertools.product(grid, grid, floors, crosses):
            for dense in ([9.0] if cjk else [x / 100 for x in range(40, 56, 2)]):
                p = (a, b, floor, cross, dense)
                wrong = {lang: sum(not covered(r, *p) for r in group if r["lang"] == lang and r["ans"])
                         for lang in langs}
                if all(w <= 0.05 * sum(r["lang"] == lang and r["ans"] for r in group) for lang, w in wrong.items()):
                    best.append((sum(not covered(r, *p) for r in unans), -sum(wrong.values()), -a - b, p))
        best.sort(reverse=True)  # most told, fewest wrongly told, the fewest word terms
        print("CJK" if cjk else "en", f"{len(unans)} unanswerable; best (told, -wrongly told, "
              "(a, b, floor, cross, dense)):", [(t, w, p) for t, w, _, p in best[:3]])


if __name__ == "__main__" and "--floor" in sys.argv:
    calibrate(floor_features())

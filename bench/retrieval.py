"""Retrieval quality on the three question sets (issue 27): hit@5 per language, cross-language, the relevance
floor on unanswerable questions, and same-script preference.

    python bench/retrieval.py                   # dev + held-out on ../shared/corpus/pdf, leaflets on tests/eval/leaflets
    python bench/retrieval.py --sets leaflets   # one set
    python bench/retrieval.py --reuse           # keep the ingested stores in $KBCHAT_BENCH_DIR/retrieval-*

Each corpus is ingested with default settings (`Settings()` but the data dir), searched with k=5 exactly as
`kbchat eval` does, and scored with kbchat.evaluate.score (the scorer of ../shared/eval/score.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import CORPUS, QUESTIONS, REPO, WORK

from kbchat.documents.pdf import read_pdf
from kbchat.evaluate import format_table, hits_to_json, load_questions, score
from kbchat.search.loaders import load_embedder
from kbchat.search.multilingual import load_multilingual
from kbchat.search.retrieve import search
from kbchat.search.store import EmbeddedStore
from kbchat.settings import Settings

LEAFLETS = REPO / "tests" / "eval" / "leaflets"
SETS = {
    "dev": (QUESTIONS, CORPUS),
    "heldout": (REPO / "tests" / "eval" / "questions-heldout.jsonl", CORPUS),
    "leaflets": (REPO / "tests" / "eval" / "questions-leaflets.jsonl", LEAFLETS),
    # written after the floor was first calibrated, and never used to choose it: the floor's unseen check
    "floor": (REPO / "tests" / "eval" / "questions-floor.jsonl", LEAFLETS),
}


def build(corpus: Path, reuse: bool):
    """An embedded store holding `corpus` (ingested once per corpus; kept with --reuse)."""
    data = WORK / f"retrieval-{corpus.name}"
    if data.exists() and not reuse:
        shutil.rmtree(data)
    s = Settings(data_dir=data)
    emb = load_embedder(s)
    store = EmbeddedStore(s.data_dir, emb, load_multilingual(s.multilingual_embedder))
    kb = store.collection(s.shared_collection)
    if not kb.documents():
        t, n = time.perf_counter(), 0
        for pdf in sorted(corpus.glob("*.pdf")):
            n += kb.add(read_pdf(pdf, chunk_size=s.chunk_size, chunk_overlap=s.chunk_overlap)).doc.passages
        print(f"ingested {corpus}: {n} passages in {time.perf_counter() - t:.1f} s")
    return s, emb, store, kb


def script_of(name: str) -> str | None:
    """The script a leaflet is written in, from its name prefix."""
    return {"zhtw": "zh-TW", "zhcn": "zh-CN"}.get(name.split("-")[0])


def run(name: str, reuse: bool, stores: dict) -> dict:
    qpath, corpus = SETS[name]
    if corpus not in stores:
        stores[corpus] = build(corpus, reuse)
    s, emb, _, kb = stores[corpus]
    questions = load_questions(qpath)
    hits = {q["id"]: search([kb], emb, q["question"], k=5, candidate_k=s.candidate_k) for q in questions}
    results = {i: hits_to_json(h) for i, h in hits.items()}
    report = score(questions, results, 5)
    print(f"\n== {name}: {qpath.name} ({len(questions)} questions)\n" + format_table(report))
    zh = [q for q in questions if q["lang"] in ("zh-CN", "zh-TW") and not q["cross"] and q["answerable"]]
    if zh:
        row = score(zh, results, 5)["groups"]["all"]
        print(f"{'Chinese same-language':32s} {row['n']:4d} {row['hit@1']:7.3f} {row['hit@5']:7.3f}")
    floor = {}
    for q in questions:
        told = not hits[q["id"]] or hits[q["id"]][0].covered is False
        floor.setdefault(q["lang"], {"unans": [0, 0], "ans": [0, 0]})
        key = "ans" if q["answerable"] else "unans"
        floor[q["lang"]][key][0] += told
        floor[q["lang"]][key][1] += 1
    for lang, f in sorted(floor.items()):
        u, a = f["unans"], f["ans"]
        if u[1] or a[1]:
            print(f"not-covered {lang:6s}: unanswerable told {u[0]}/{u[1]}, answerable wrongly told {a[0]}/{a[1]}")
    same_script = [q for q in questions if q["answerable"] and script_of(q["doc"] or "") and
                   q["lang"] in ("zh-TW", "zh-CN")]
    if same_script:
        ok = sum(1 for q in same_script
                 if hits[q["id"]] and script_of(hits[q["id"]][0].source) == q["lang"])
        pairs = [q for q in same_script if script_of(q["doc"]) == q["lang"] and "flu" in q["doc"]]
        okp = sum(1 for q in pairs if hits[q["id"]] and hits[q["id"]][0].source == q["doc"])
        print(f"same script at rank 1: {ok}/{len(same_script)}; flu pair (both scripts exist): {okp}/{len(pairs)}")
    return {"report": report, "floor": floor}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="dev,heldout,leaflets,floor")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write the reports here")
    args = ap.parse_args()
    stores: dict = {}
    out = {name: run(name, args.reuse, stores) for name in args.sets.split(",")}
    for _, _, store, _ in stores.values():
        store.close()
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()

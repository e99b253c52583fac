"""Knowledge bases in PostgreSQL: the same contract as kbchat.search.store (Store, Collection) for several app
replicas sharing one database.

Passages, their vectors (pgvector ``halfvec``, an HNSW index per dimension) and their analysed tokens
(kbchat.search.lexical.analyze, the embedded BM25 index's analyzer) live in the database KBCHAT_DATABASE_URL
names, beside accounts and chat history, on the process's one connection pool (kbchat.records.database).
Keyword search is BM25 computed in SQL from stored term counts and per-collection document
frequencies (PostgreSQL's own ts_rank has no IDF). A new version of a document replaces the old one as
in kbchat.search.store: passages are written under an inactive catalog row, then one transaction flips it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from typing import Callable

import numpy as np
from sqlalchemy import event, text

from kbchat.documents.passages import ParsedPdf, Passage, retrieval_text
from kbchat.errors import KbchatError
from kbchat.search.base import (
    DOC_COLS,
    EXACT_BELOW,
    WRITE_BATCH,
    ActiveSearch,
    AddResult,
    DocumentInfo,
    ExactVectors,
    check_embedder,
    check_vectors,
    doc_row,
    fill_multilingual_in_background,
    id_prefixes,
    now_iso,
)
from kbchat.search.lexical import analyze, analyze_query, warm_up
from kbchat.search.pgpostings import (
    POSTING,
    PostingsCache,
    bm25_top,
    forget_dead,
    merge_postings,
    purge_dead,
    read_postings,
)

log = logging.getLogger("kbchat.store")

# Keyword search reads postings, never a whole collection: kb_postings holds, per term, the passages holding it as
# packed arrays (passage number; page, start: the passage id; tf; length norm), a few rows per term (kbchat.search.pgpostings
# merges them as they grow). A question reads the rows of its terms and sums BM25 over them in numpy: exact,
# with no candidate cap. Summing the same postings in SQL, one row per posting, cost 145 ms for 108k postings
# (28k passages, a 25-term question); walking them here costs a few ms.
EF_SEARCH = 100  # HNSW candidates per query (pgvector's default is 40; Chroma's index here uses 200)


def _vec(v) -> str:
    """A vector as pgvector's text form (5 decimals: halfvec keeps about 3 significant digits)."""
    return str(np.round(np.asarray(v, dtype=np.float32), 5).tolist())  # (base.as_stored: what is kept of it)


def _long_to_int4(i: int) -> int:
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE = 255 - _long_to_int4(2**31 - 1)  # 24


def fieldnorm(n: int) -> int:
    """A length as tantivy (and Lucene) keep it in one byte: exact up to 39, then rounded down on a log
    scale (40, 42, ..., 56, 60, ...). BM25 here uses it so both stores rank alike."""
    if n < _FREE:
        return n
    return _FREE + _int4_to_long(_long_to_int4(n - _FREE))


def _tokens(p: Passage) -> tuple[list[str], list[int], int]:
    toks = analyze(retrieval_text(p))
    counts = Counter(toks)
    terms = sorted(counts)
    return terms, [counts[t] for t in terms], len(toks)


def _blocks(collection: str, rows: list[dict]) -> list[dict]:
    """kb_postings rows of written passage rows: per (document, term), the passages' postings packed as
    POSTING records; ``block`` (the batch's first passage id) keeps batches apart."""
    by: dict[tuple[str, str], list[tuple[int, int, int, int, int]]] = {}
    for r in rows:
        for t, f in zip(r["terms"], r["tfs"]):
            by.setdefault((r["h"], t), []).append((r["pno"], r["pg"], r["start"], f, r["lnorm"]))
    block = min(r["id"] for r in rows)
    out = []
    for (h, t), post in by.items():
        out.append({"c": collection, "t": t, "h": h, "b": block, "post": np.array(post, dtype=POSTING).tobytes()})
    return out


class PgCollection(ActiveSearch):
    """One knowledge base in PostgreSQL (the kbchat.search.base.Collection contract)."""

    def __init__(self, store: "PgStore", name: str, dim: int):
        self.name = name
        self.dim = dim
        self._store = store
        self._lock = threading.RLock()
        self._postings: PostingsCache | None = None
        self._postings_lock = threading.Lock()
        self._exact_cache: dict[str, tuple] = {}  # table -> (collection version, ExactVectors or None)
        self._exact_lock = threading.Lock()
        self._cleanup()
        with self._engine.begin() as conn:  # (one pass over the merged postings: when the collection opens)
            self._lock_sql(conn)
            forget_dead(conn, self.name)

    @property
    def _engine(self):
        return self._store.engine

    @property
    def embedder(self):
        """The store's embedder (every collection of a store shares it)."""
        return self._store.embedder

    @property
    def multilingual(self):
        """The store's multilingual encoder (issue 27), or None."""
        return self._store.multilingual

    def _lock_sql(self, conn) -> None:
        """Serialise this collection's writes across processes for the transaction (term statistics and
        the flip of the active version stay exact under concurrent writers and replicas)."""
        conn.execute(text("SELECT pg_advisory_xact_lock(7312026, hashtext(:c))"), {"c": self.name})

    def _active_row(self, conn, key: str):
        return conn.execute(text(
            f"SELECT {DOC_COLS} FROM kb_documents WHERE collection=:c AND source_key=:k AND active"
        ), {"c": self.name, "k": key}).first()

    def _hash_in_use(self, conn, doc_hash: str) -> bool:
        return conn.execute(text(
            "SELECT 1 FROM kb_documents WHERE collection=:c AND doc_hash=:h AND active LIMIT 1"
        ), {"c": self.name, "h": doc_hash}).first() is not None

    def _delete_passages(self, conn, doc_hash: str) -> None:
        """Delete one document's passages and take their terms out of the statistics (caller holds the lock)."""
        conn.execute(text("""
            WITH gone AS (DELETE FROM kb_passages WHERE collection=:c AND doc_hash=:h RETURNING terms, ntok),
            post AS (DELETE FROM kb_postings WHERE collection=:c AND doc_hash=:h),
            tot AS (UPDATE kb_collections SET n_passages = n_passages - (SELECT count(*) FROM gone),
                           n_tokens = n_tokens - (SELECT COALESCE(SUM(ntok), 0) FROM gone)
                    WHERE name=:c)
            UPDATE kb_terms t SET df = t.df - d.n
            FROM (SELECT term, count(*) AS n FROM gone, unnest(gone.terms) AS term GROUP BY term) d
            WHERE t.collection=:c AND t.term = d.term
        """), {"c": self.name, "h": doc_hash})
        conn.execute(text("DELETE FROM kb_terms WHERE collection=:c AND df <= 0"), {"c": self.name})
        # its runs inside merged postings rows stay until a merge drops them (kbchat.search.pgpostings)
        conn.execute(text("INSERT INTO kb_dead (collection, doc_hash) VALUES (:c, :h) ON CONFLICT DO NOTHING"),
                     {"c": self.name, "h": doc_hash})

    def _cleanup(self) -> None:
        """Delete inactive orphans (a replaced version, a crash) whose hash no key uses; a document another
        process is writing right now (its advisory lock held) is left alone."""
        with self._lock, self._engine.begin() as conn:
            self._lock_sql(conn)
            rows = conn.execute(text(
                "SELECT DISTINCT doc_hash FROM kb_documents WHERE collection=:c AND NOT active"
            ), {"c": self.name}).all()
            for (h,) in rows:
                if not conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:c), hashtext(:h))"),
                                    {"c": self.name, "h": h}).scalar():
                    continue  # being written by another add()
                if not self._hash_in_use(conn, h):
                    self._delete_passages(conn, h)
                conn.execute(text(
                    "DELETE FROM kb_documents WHERE collection=:c AND doc_hash=:h AND NOT active"
                ), {"c": self.name, "h": h})

    # -- public API (kbchat.search.base.Collection's)
    def add(
        self,
        doc: ParsedPdf,
        *,
        source_key: str | None = None,
        origin: str = "",
        on_progress: Callable[[int, int], None] | None = None,
        vectors: np.ndarray | None = None,
        added_by: str = "",
        ml_vectors: np.ndarray | None = None,
    ) -> AddResult:
        """Add or replace one document under ``source_key`` (default: its file name); ``vectors`` and
        ``ml_vectors`` as in the embedded store's add()."""
        t0 = time.perf_counter()
        check_vectors(doc, vectors, ml_vectors)
        key = source_key or doc.source
        info = DocumentInfo(key, doc.source, str(doc.path), doc.doc_hash, doc.pages, len(doc.passages),
                            origin, now_iso(), added_by)
        c = self.name
        with self._lock, self._engine.connect() as hold:
            # A session lock on (collection, hash) while the passages are written: another process's
            # _cleanup leaves them alone.
            hold.execute(text("SELECT pg_advisory_lock(hashtext(:c), hashtext(:h))"), {"c": c, "h": doc.doc_hash})
            try:
                with self._engine.connect() as conn:
                    old = self._active_row(conn, key)
                    if old is not None and old[3] == doc.doc_hash:
                        return AddResult("unchanged", DocumentInfo(*old), time.perf_counter() - t0)
                    duplicate = self._hash_in_use(conn, doc.doc_hash)
                    original = conn.execute(text(
                        f"SELECT {DOC_COLS} FROM kb_documents WHERE collection=:c AND doc_hash=:h AND active "
                        "AND source_key != :k LIMIT 1"), {"c": c, "h": doc.doc_hash, "k": key},
                    ).first() if duplicate else None
                if not duplicate:
                    with self._engine.begin() as conn:
                        self._lock_sql(conn)
                        # Write the new passages under an inactive catalog row first: invisible to search.
                        conn.execute(text(
                            f"INSERT INTO kb_documents (collection, {DOC_COLS}, active) VALUES "
                            "(:c, :sk, :s, :p, :h, :pg, :n, :o, :at, :by, false)"), {"c": c, **_params(info)})
                        self._delete_passages(conn, doc.doc_hash)  # leftovers of a failed or crashed attempt
                    self._write_passages(doc.passages, on_progress, vectors, ml_vectors)
                # Flip: one transaction makes the new version the active one for this key.
                with self._engine.begin() as conn:
                    self._lock_sql(conn)
                    conn.execute(text("UPDATE kb_documents SET active=false WHERE collection=:c AND source_key=:k "
                                      "AND active"), {"c": c, "k": key})
                    conn.execute(text("DELETE FROM kb_documents WHERE collection=:c AND source_key=:k "
                                      "AND doc_hash=:h AND NOT active"), {"c": c, "k": key, "h": doc.doc_hash})
                    conn.execute(text(
                        f"INSERT INTO kb_documents (collection, {DOC_COLS}, active) VALUES "
                        "(:c, :sk, :s, :p, :h, :pg, :n, :o, :at, :by, true)"), {"c": c, **_params(info)})
                    if not duplicate:
                        conn.execute(text(
                            "DELETE FROM kb_documents WHERE collection=:c AND doc_hash=:h AND NOT active "
                            "AND source_key != :k"), {"c": c, "h": doc.doc_hash, "k": key})
            finally:
                hold.execute(text("SELECT pg_advisory_unlock(hashtext(:c), hashtext(:h))"),
                             {"c": c, "h": doc.doc_hash})
                hold.commit()
            self._cleanup()
        status = "duplicate" if duplicate else ("replaced" if old is not None else "added")
        return AddResult(status, DocumentInfo(*original) if original else info, time.perf_counter() - t0)

    def keyword_window(self):
        """Nothing to defer: each write commits its postings with its passages."""
        return contextlib.nullcontext()

    def needs_embedding(self, doc: ParsedPdf, source_key: str | None = None) -> bool:
        """False if add() would skip the embedding (unchanged, or a duplicate of an active document)."""
        with self._engine.connect() as conn:
            old = self._active_row(conn, source_key or doc.source)
            if old is not None and old[3] == doc.doc_hash:
                return False
            return not self._hash_in_use(conn, doc.doc_hash)

    def _write_passages(self, passages: list[Passage], on_progress, vectors=None, ml_vectors=None) -> None:
        total = len(passages)
        if on_progress:
            on_progress(0, total)
        batch = -(-total // -(-total // WRITE_BATCH)) if total else WRITE_BATCH
        for i in range(0, total, batch):
            part = passages[i : i + batch]
            vecs = (vectors[i : i + batch] if vectors is not None
                    else self._store.embedder.encode_passages([retrieval_text(p) for p in part]))
            self.write_rows(part, vecs, None if ml_vectors is None else ml_vectors[i : i + batch])
            if on_progress:
                on_progress(min(i + batch, total), total)

    def write_rows(self, part: list[Passage], vecs, mvecs=None) -> int:
        """Insert passages with their vectors and count their terms; rows already present are skipped.
        Returns rows written. Used by add() and by `kbchat migrate`. The multilingual vectors are ``mvecs``,
        or embedded here when not given."""
        if len(vecs) and len(vecs[0]) != self.dim:
            raise KbchatError(f"vectors of dimension {len(vecs[0])} for collection '{self.name}' of dimension "
                              f"{self.dim}")
        ml = self._store.multilingual
        if ml is None or not part:
            mvecs = None
        elif mvecs is None:
            mvecs = ml.encode_passages([retrieval_text(p) for p in part])
        rows = []
        for p, v in zip(part, vecs):
            terms, tfs, ntok = _tokens(p)
            rows.append({"c": self.name, "id": p.id, "h": p.doc_hash, "s": p.source, "pg": p.page,
                         "pl": p.page_label, "st": p.start, "en": p.end, "t": p.text, "ocr": bool(p.ocr),
                         "ctx": p.context, "dim": self.dim, "v": _vec(v), "terms": terms, "tfs": tfs,
                         "start": p.start,
                         "ntok": ntok, "lnorm": fieldnorm(ntok)})
        with self._engine.begin() as conn:
            self._lock_sql(conn)
            have = {r[0] for r in conn.execute(text(
                "SELECT id FROM kb_passages WHERE collection=:c AND id = ANY(CAST(:ids AS text[]))"),
                {"c": self.name, "ids": [r["id"] for r in rows]})}
            rows = [r for r in rows if r["id"] not in have]
            if not rows:
                return 0
            # passage numbers, dense within the collection (the postings cache counts scores by them)
            first = conn.execute(text("UPDATE kb_collections SET next_pno = next_pno + :n WHERE name=:c "
                                      "RETURNING next_pno - :n"), {"c": self.name, "n": len(rows)}).scalar()
            for i, r in enumerate(rows):
                r["pno"] = first + i
            conn.execute(text(
                'INSERT INTO kb_passages (collection, id, doc_hash, source, page, page_label, start, "end", '
                "text, ocr, context, dim, embedding, terms, tfs, ntok, lnorm) VALUES (:c, :id, :h, :s, :pg, :pl, "
                ":st, :en, :t, :ocr, :ctx, :dim, CAST(:v AS halfvec), CAST(:terms AS text[]), "
                "CAST(:tfs AS integer[]), :ntok, :lnorm)"), rows)
            # The postings of the batch: one block per (term, document), packed, merged with the term's other
            # rows once it has MERGE_FANOUT of a level (a written-again document's old runs purged first).
            purge_dead(conn, self.name, sorted({r["h"] for r in rows}))
            conn.execute(text(
                "INSERT INTO kb_postings (collection, term, doc_hash, block, post) VALUES (:c, :t, :h, :b, :post)"),
                _blocks(self.name, rows))
            df = Counter(t for r in rows for t in r["terms"])
            terms = sorted(df)
            merge_postings(conn, self.name, terms)
            conn.execute(text(
                "INSERT INTO kb_terms (collection, term, df) SELECT :c, t, n "
                "FROM unnest(CAST(:terms AS text[]), CAST(:dfs AS bigint[])) AS u(t, n) "
                "ON CONFLICT (collection, term) DO UPDATE SET df = kb_terms.df + excluded.df"),
                {"c": self.name, "terms": terms, "dfs": [df[t] for t in terms]})
            conn.execute(text("UPDATE kb_collections SET n_passages = n_passages + :n, n_tokens = n_tokens + :t "
                              "WHERE name = :c"),
                         {"c": self.name, "n": len(rows), "t": sum(r["ntok"] for r in rows)})
            if mvecs is not None:
                written = {r["id"] for r in rows}
                self._insert_ml(conn, [(p, v) for p, v in zip(part, mvecs) if p.id in written])
        return len(rows)

    def _insert_ml(self, conn, pairs) -> None:
        """Multilingual vectors of passages (a passage deleted meanwhile is skipped, one present kept)."""
        enc = self._store.multilingual
        if not pairs:
            return
        conn.execute(text(
            "INSERT INTO kb_ml (collection, id, doc_hash, encoder, dim, embedding) "
            "SELECT :c, :id, :h, :e, :d, CAST(:v AS halfvec) WHERE EXISTS "
            "(SELECT 1 FROM kb_passages WHERE collection=:c AND id=:id) ON CONFLICT (collection, id) DO NOTHING"),
            [{"c": self.name, "id": p.id, "h": p.doc_hash, "e": enc.name, "d": int(enc.dim), "v": _vec(v)}
             for p, v in pairs])

    def backfill_multilingual(self, batch: int = 64) -> int:
        """Embed the passages the multilingual index lacks (stored before it, or by a process without it);
        returns how many. One batch per transaction, so uploads and searches go on meanwhile."""
        enc = self._store.multilingual
        if enc is None:
            return 0
        done = 0
        while True:
            with self._engine.connect() as conn:
                ids = [r[0] for r in conn.execute(text(
                    "SELECT p.id FROM kb_passages p LEFT JOIN kb_ml m ON m.collection = p.collection AND m.id = p.id "
                    "WHERE p.collection = :c AND m.id IS NULL ORDER BY p.id LIMIT :n"), {"c": self.name, "n": batch})]
            part = list(self.passages(ids).values())
            if not part:
                return done
            vecs = enc.encode_passages([retrieval_text(p) for p in part])
            with self._engine.begin() as conn:
                self._insert_ml(conn, list(zip(part, vecs)))
                # a new version of the collection: every replica's exact index reads the vectors again
                conn.execute(text("UPDATE kb_collections SET next_pno = next_pno WHERE name=:c"), {"c": self.name})
            done += len(part)

    def missing_multilingual(self) -> int:
        """Passages without a multilingual vector."""
        with self._engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM kb_passages p LEFT JOIN kb_ml m ON m.collection = p.collection "
                "AND m.id = p.id WHERE p.collection = :c AND m.id IS NULL"), {"c": self.name}).scalar())

    def remove(self, source_key: str) -> bool:
        """Remove the document stored under ``source_key``; False if there was none."""
        with self._lock:
            with self._engine.begin() as conn:
                self._lock_sql(conn)
                n = conn.execute(text("UPDATE kb_documents SET active=false WHERE collection=:c AND source_key=:k "
                                      "AND active"), {"c": self.name, "k": source_key}).rowcount
            if not n:
                return False
            self._cleanup()
            return True

    def documents(self) -> list[DocumentInfo]:
        """Active documents, by source key."""
        with self._engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {DOC_COLS} FROM kb_documents WHERE collection=:c AND active "
                                     "ORDER BY source_key"), {"c": self.name}).all()
        return [DocumentInfo(*r) for r in rows]

    def active_paths(self) -> dict[str, str]:
        """{doc_hash: file path} of the active documents."""
        with self._engine.connect() as conn:
            rows = conn.execute(text("SELECT doc_hash, path FROM kb_documents WHERE collection=:c AND active"),
                                {"c": self.name}).all()
        return {h: p for h, p in rows}

    def passages(self, ids: list[str]) -> dict[str, Passage]:
        """{passage id: Passage} for these ids."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(text(
                'SELECT id, source, page, page_label, start, "end", text, doc_hash, ocr, context FROM kb_passages '
                "WHERE collection=:c AND id = ANY(CAST(:ids AS text[]))"), {"c": self.name, "ids": ids}).all()
        return {r[0]: Passage(r[1], r[2], r[3] or None, r[4], r[5], r[6], r[7], ocr=bool(r[8]), context=r[9] or "")
                for r in rows}

    def dense_ids(self, qvec, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """(passage id, cosine similarity) of the nearest passages of active documents, best first."""
        return self._nearest("kb_passages", int(self.dim), qvec, k, active)

    def multilingual_ids(self, mvec, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """As dense_ids, on the multilingual index (empty without a multilingual encoder)."""
        enc = self._store.multilingual
        return [] if enc is None else self._nearest("kb_ml", int(enc.dim), mvec, k, active)

    def _nearest(self, table: str, d: int, qvec, k: int, active: dict[str, str] | None) -> list[tuple[str, float]]:
        active = self.active_paths() if active is None else active
        if not active or k <= 0:
            return []
        prefixes = id_prefixes(active)
        # As in kbchat.search.store: the plain HNSW search with some slack, filtered here; the exact filter on
        # the active hashes only when the slack was not enough (pgvector's iterative scan serves it).
        sql = (f"SELECT id, 1 - (embedding::halfvec({d}) <=> CAST(:q AS halfvec({d}))) FROM {table} "
               f"WHERE collection=:c AND dim={d} {{extra}} ORDER BY embedding::halfvec({d}) <=> "
               f"CAST(:q AS halfvec({d})) LIMIT :k")
        q = _vec(qvec)
        with self._engine.connect() as conn:
            exact = self._exact(conn, table, d)
            if exact is not None:  # a small index: every vector, as the embedded store searches it (ExactVectors)
                return exact.top(qvec, k, prefixes)
            if k + 16 > EF_SEARCH:
                conn.execute(text(f"SET LOCAL hnsw.ef_search = {k + 16}"))
            rows = conn.execute(text(sql.format(extra="")), {"c": self.name, "q": q, "k": k + 16}).all()
            out = [(pid, float(s)) for pid, s in rows if pid.split("-", 1)[0] in prefixes]
            if len(out) < k and len(out) < len(rows):
                rows = conn.execute(text(sql.format(extra="AND doc_hash = ANY(CAST(:h AS text[]))")),
                                    {"c": self.name, "q": q, "k": k, "h": sorted(active)}).all()
                out = sorted(((pid, float(s)) for pid, s in rows), key=lambda t: -t[1])
        return out[:k]

    def _exact(self, conn, table: str, d: int) -> ExactVectors | None:
        """The index's vectors in memory when the collection holds at most EXACT_BELOW passages, read again when
        the collection's version (kb_collections.xmin: every write of every replica) changed, else None."""
        gen, n = conn.execute(text("SELECT xmin::text, n_passages FROM kb_collections WHERE name=:c"),
                              {"c": self.name}).first() or (None, 0)
        with self._exact_lock:
            got = self._exact_cache.get(table)
            if got is None or got[0] != gen:
                exact = None
                if int(n or 0) <= EXACT_BELOW:
                    def fetch(ids):  # halfvec's binary form: dimension, unused, then the halves
                        rows = conn.execute(text(f"SELECT id, halfvec_send(embedding) FROM {table} WHERE collection=:c "
                                                 "AND dim=:d AND id = ANY(CAST(:ids AS text[]))"),
                                            {"c": self.name, "d": d, "ids": ids}).all() if ids else []
                        return [i for i, _ in rows], np.array([np.frombuffer(b, ">f2", offset=4) for _, b in rows]
                                                               ).reshape(len(rows), d)

                    ids = [i for (i,) in conn.execute(text(f"SELECT id FROM {table} WHERE collection=:c AND dim=:d"),
                                                      {"c": self.name, "d": d})]
                    exact = ExactVectors.read(got[1] if got else None, gen, ids, fetch)
                got = self._exact_cache[table] = (gen, exact)
        return got[1]

    def term_stats(self, terms: list[str]) -> tuple[int, dict[str, int]]:
        """(passages, {term: passages holding it}) of the keyword statistics (the relevance floor's evidence)."""
        with self._engine.connect() as conn:
            n = conn.execute(text("SELECT n_passages FROM kb_collections WHERE name=:c"), {"c": self.name}).scalar()
            got = dict(conn.execute(text(
                "SELECT term, df FROM kb_terms WHERE collection=:c AND term = ANY(CAST(:t AS text[]))"),
                {"c": self.name, "t": list(terms)}).all())
        return int(n or 0), {t: int(got.get(t, 0)) for t in terms}

    def lexical_ids(self, query: str, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """(passage id, BM25 score) of active documents' passages, best first: every posting of the question's
        terms in the active documents is scored (exact BM25, tantivy's formula)."""
        active = self.active_paths() if active is None else active
        terms = list(dict.fromkeys(analyze_query(query)))
        if not active or k <= 0 or not terms:
            return []
        with self._engine.connect() as conn:
            n, ntok, dfs, gen = conn.execute(text(
                "SELECT n_passages, n_tokens, (SELECT json_object_agg(term, df) FROM kb_terms WHERE collection=:c "
                "AND term = ANY(CAST(:t AS text[]))), xmin::text FROM kb_collections WHERE name=:c"),
                {"c": self.name, "t": terms}).first() or (0, 0, None, None)
            if not dfs:
                return []  # no term of the question occurs in this collection
            have = sorted(dfs)
            with self._postings_lock:  # the decoded postings of this version (PostingsCache)
                cache = self._postings
                if cache is None or cache.gen != gen:
                    cache = self._postings = PostingsCache(gen, int(n), int(ntok))
                want = cache.missing(have)
                if cache.usable and (not want or cache.load(read_postings(conn, self.name, want), dfs)):
                    if not cache.missing(have):  # (a question larger than the cache reads as below)
                        return cache.top(have, active, k)
            blocks = read_postings(conn, self.name, have)
        return bm25_top(blocks, dfs, int(n), int(ntok), k, active)

    def path_of(self, doc_hash: str) -> str | None:
        """File path recorded for an active document hash."""
        with self._engine.connect() as conn:
            row = conn.execute(text("SELECT path FROM kb_documents WHERE collection=:c AND doc_hash=:h AND active "
                                    "LIMIT 1"), {"c": self.name, "h": doc_hash}).first()
        return row[0] if row else None

    def __len__(self) -> int:
        """Number of passages of active documents."""
        with self._engine.connect() as conn:
            n = conn.execute(text(
                "SELECT COALESCE(SUM(passages), 0) FROM (SELECT DISTINCT doc_hash, passages FROM kb_documents "
                "WHERE collection=:c AND active) d"), {"c": self.name}).scalar()
        return int(n)

    def close(self) -> None:
        """Nothing to release: connections go back to the pool after each call."""


def _hnsw_settings(dbapi_conn, _record) -> None:
    with dbapi_conn.cursor() as cur:
        # The BM25 statement's estimated cost crosses jit_above_cost: compiling it took up to seconds per
        # question (p95 2.8 s against 0.19 s without, 32k passages); it runs in milliseconds interpreted.
        cur.execute("SET jit = off")
        cur.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        cur.execute("SET hnsw.iterative_scan = relaxed_order")
    dbapi_conn.commit()


def _params(info: DocumentInfo) -> dict:
    sk, s, p, h, pg, n, o, at, by = doc_row(info)
    return {"sk": sk, "s": s, "p": p, "h": h, "pg": pg, "n": n, "o": o, "at": at, "by": by}


class PgStore:
    """All knowledge bases in one PostgreSQL database (the kbchat.search.store.EmbeddedStore contract)."""

    def __init__(self, db, embedder, multilingual=None):
        """``db``: a kbchat.records.database.Database on PostgreSQL (migrated); ``embedder``: as for Store;
        ``multilingual``: the second, multilingual encoder (kbchat.search.multilingual) or None."""
        warm_up()  # the keyword analyzer (OpenCC, jieba) loads in the background
        self.db = db
        self.engine = db.engine
        self.embedder = embedder
        self.multilingual = multilingual
        self.data_dir = None
        # Every pooled connection searches the HNSW graph with EF_SEARCH candidates, a filtered search
        # (the fallback on active documents) scans on until it has enough (pgvector's iterative scan), and
        # no statement is JIT-compiled.
        event.listen(self.engine, "connect", _hnsw_settings)
        self.engine.pool.dispose()  # connections made before the listener get it when made again
        self._open: dict[str, PgCollection] = {}
        self._lock = threading.RLock()

    def collection(self, name: str) -> PgCollection:
        """Create or open a collection; raises EmbedderMismatch if it was built with another model."""
        with self._lock:
            if name in self._open:
                return self._open[name]
            emb = self.embedder
            with self.engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO kb_collections (name, embedder, dim, variant, created_at) "
                    "VALUES (:n, :e, :d, :v, :at) ON CONFLICT (name) DO NOTHING"),
                    {"n": name, "e": emb.name, "d": emb.dim, "v": emb.precision, "at": now_iso()})
                got = conn.execute(text("SELECT embedder, dim, variant FROM kb_collections WHERE name=:n"),
                                   {"n": name}).first()
            check_embedder(name, {"embedder": got[0], "dim": got[1], "embedder_variant": got[2]}, emb)
            self._ensure_index(int(got[1]))
            c = PgCollection(self, name, int(got[1]))
            self._open[name] = c
            if self.multilingual is not None:
                self._open_multilingual(c)
            return c

    def _open_multilingual(self, c: PgCollection) -> None:
        """The multilingual index of ``c``: its HNSW index, vectors of another encoder dropped (derived
        data), and the passages it lacks embedded in the background (searches meanwhile use what is there)."""
        enc = self.multilingual
        d = int(enc.dim)
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(7312028, :d)"), {"d": d})
            conn.execute(text(
                f"CREATE INDEX IF NOT EXISTS kb_ml_hnsw_{d} ON kb_ml USING hnsw "
                f"((embedding::halfvec({d})) halfvec_cosine_ops) WHERE dim = {d}"))
            conn.execute(text("DELETE FROM kb_ml WHERE collection=:c AND encoder != :e"), {"c": c.name, "e": enc.name})
        missing = c.missing_multilingual()
        if missing:
            log.info("collection %s: adding %d passages to the multilingual index in the background", c.name, missing)
            fill_multilingual_in_background(c, f"kbchat-ml-{c.name}")

    def _ensure_index(self, dim: int) -> None:
        """The HNSW index of vectors of this dimension (cosine, halfvec: half the size of vector)."""
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(7312027, :d)"), {"d": dim})
            conn.execute(text(
                f"CREATE INDEX IF NOT EXISTS kb_passages_hnsw_{dim} ON kb_passages USING hnsw "
                f"((embedding::halfvec({dim})) halfvec_cosine_ops) WHERE dim = {dim}"))

    def drop(self, name: str) -> None:
        """Delete a collection with its passages, vectors and statistics."""
        with self._lock:
            self._open.pop(name, None)
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(7312026, hashtext(:c))"), {"c": name})
                for t, col in (("kb_passages", "collection"), ("kb_postings", "collection"),
                               ("kb_dead", "collection"), ("kb_terms", "collection"),
                               ("kb_documents", "collection"), ("kb_collections", "name")):
                    conn.execute(text(f"DELETE FROM {t} WHERE {col} = :c"), {"c": name})

    def release(self, name: str) -> None:
        """Forget an open collection (nothing to close); the next collection(name) opens it again."""
        with self._lock:
            self._open.pop(name, None)

    def names(self) -> list[str]:
        """Names of the collections in this store."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT name FROM kb_collections ORDER BY name"))]

    def close(self) -> None:
        """Forget the open collections (the connection pool belongs to the Database)."""
        with self._lock:
            self._open.clear()


__all__ = ["PgCollection", "PgStore"]

"""PostgreSQL postings (kbchat.search.pgstore's keyword search): how they are packed, read, merged and scored,
and the decoded postings kept per collection version.

kb_postings rows hold, per term, packed POSTING records of the passages holding it. A write batch adds one
row per (term, document) at level 0 (``doc_hash`` its document, ``docs``/``sizes`` NULL). Rows are merged as
a log-structured index merges segments: when a term has MERGE_FANOUT rows of one level, they become one row
of the next level whose ``docs`` and ``sizes`` say which document each run of postings belongs to (its
``doc_hash`` is ''). So a term is a few rows per level, not one row per document: at 100,000 passages in
1,000-passage documents a question read ~6,600 rows before, and a base of small documents read one row per
document and term. A deleted document's level-0 rows go at once; its runs inside merged rows stay, skipped
by the active-document filter, until a merge drops them (kb_dead lists such documents; forget_dead drops the
rows of documents no merged row holds any more, when a collection opens), or at once if the same document is
written again (purge_dead), so nothing is ever counted twice.
"""

from __future__ import annotations

import uuid

import numpy as np
from sqlalchemy import text

from kbchat.search.base import best_by_score

# BM25 as tantivy scores it (k1, b; idf = ln(1 + (N - df + 0.5) / (df + 0.5)); lengths as fieldnorm() keeps
# them, the average from exact token counts).
K1, B = 1.2, 0.75
# One posting, packed: the passage's number (dense within its collection: kb_collections.next_pno hands them
# out), page and start (the passage id with the document hash), tf, length norm; big-endian as PostgreSQL's
# int4send / int2send write them (migration 0010 packs them in SQL).
POSTING = np.dtype([("pno", ">i4"), ("page", ">i4"), ("start", ">i4"), ("tf", ">i2"), ("lnorm", ">i2")])

# Postings kept decoded per collection version (PostingsCache): about 20 bytes each, so about 80 MB at most.
CACHE_POSTINGS = 4_000_000
# Rows of one level (per term) merged into one row of the next: a term reads at most MERGE_FANOUT - 1 rows per
# level; each posting is rewritten about log_FANOUT(documents) times.
MERGE_FANOUT = 8

# The postings of the question's terms, one row per stored row (a few per term): its documents' hashes and
# their runs' lengths in bytes (one document for a level-0 row), and the packed records.
READ_SQL = """
SELECT term, COALESCE(docs, ARRAY[doc_hash]), COALESCE(sizes, ARRAY[octet_length(post)]), post
FROM kb_postings WHERE collection = %(c)s AND term = ANY(CAST(%(terms)s AS text[]))
"""


def read_postings(conn, collection: str, terms: list[str]) -> list[tuple[str, list[str], list[int], bytes]]:
    """Per term: (term, document hash per run, run lengths in bytes, the runs' records concatenated).
    With psycopg 3 in its binary format: bytea arrives as bytes, not as hex text to decode (a question reads
    about 1.6 MB of postings at 100k passages)."""
    raw = conn.connection.driver_connection
    params = {"c": collection, "terms": terms}
    if type(raw).__module__.split(".")[0] == "psycopg":
        with raw.cursor(binary=True) as cur:
            cur.execute(READ_SQL, params)
            rows = cur.fetchall()
    else:  # another driver (psycopg2): the same pyformat SQL
        rows = conn.exec_driver_sql(READ_SQL, params).all()
    by: dict[str, tuple[list, list, list]] = {}
    for term, docs, sizes, post in rows:
        h, s, d = by.setdefault(term, ([], [], []))
        h += docs
        s += sizes
        d.append(bytes(post))
    return [(t, h, s, b"".join(d)) for t, (h, s, d) in by.items()]


def _runs(rows) -> dict[tuple[str, int], tuple[list, list, list]]:
    """Merged rows' runs per (term, level): (document hashes, lengths, record bytes), dead ones still in."""
    out: dict[tuple[str, int], tuple[list, list, list]] = {}
    for term, level, doc_hash, docs, sizes, post in rows:
        h, s, d = out.setdefault((term, level), ([], [], []))
        post = bytes(post)
        docs, sizes = (docs, sizes) if docs is not None else ([doc_hash], [len(post)])
        at = 0
        for dh, size in zip(docs, sizes):
            h.append(dh)
            s.append(size)
            d.append(post[at: at + size])
            at += size
    return out


def _insert_merged(conn, collection: str, runs, dead: set[str]) -> None:
    """One row of the next level per (term, level), without the runs of dead documents."""
    out = []
    for (term, level), (h, s, d) in runs.items():
        keep = [i for i, dh in enumerate(h) if dh not in dead]
        if keep:
            out.append({"c": collection, "t": term, "b": uuid.uuid4().hex, "l": level + 1,
                        "docs": [h[i] for i in keep], "sizes": [s[i] for i in keep],
                        "post": b"".join(d[i] for i in keep)})
    if out:
        conn.execute(text("INSERT INTO kb_postings (collection, term, doc_hash, block, level, docs, sizes, post) "
                          "VALUES (:c, :t, '', :b, :l, CAST(:docs AS text[]), CAST(:sizes AS integer[]), :post)"),
                     out)


def _dead(conn, collection: str) -> set[str]:
    return {h for (h,) in conn.execute(text("SELECT doc_hash FROM kb_dead WHERE collection=:c"), {"c": collection})}


# A merge done by the server when no dead document's runs are to be dropped: the groups' rows deleted, their
# runs' documents and lengths flattened in row order ((block, doc_hash) is unique within a term), their bytes
# concatenated in the same order.
_MERGE_SQL = text("""
WITH m AS (
    DELETE FROM kb_postings p USING unnest(CAST(:gt AS text[]), CAST(:gl AS smallint[])) AS g(term, level)
    WHERE p.collection = :c AND p.term = g.term AND p.level = g.level
    RETURNING p.term, p.level, p.block, p.doc_hash AS h, COALESCE(p.docs, ARRAY[p.doc_hash]) AS docs,
              COALESCE(p.sizes, ARRAY[octet_length(p.post)]) AS sizes, p.post),
runs AS (
    SELECT m.term, m.level, array_agg(u.d ORDER BY m.block, m.h, u.i) AS docs,
           array_agg(u.z ORDER BY m.block, m.h, u.i) AS sizes
    FROM m, unnest(m.docs, m.sizes) WITH ORDINALITY AS u(d, z, i) GROUP BY m.term, m.level),
bytes AS (SELECT term, level, string_agg(post, ''::bytea ORDER BY block, h) AS post, count(*) AS n
          FROM m GROUP BY term, level),
ins AS (
    INSERT INTO kb_postings (collection, term, doc_hash, block, level, docs, sizes, post)
    SELECT :c, r.term, '', md5(random()::text || r.term), r.level + 1, r.docs, r.sizes, b.post
    FROM runs r JOIN bytes b USING (term, level))
SELECT sum(n) FROM bytes
""")


def merge_postings(conn, collection: str, terms: list[str]) -> int:
    """After a write of level-0 rows of ``terms``: merge every term's MERGE_FANOUT rows of one level into one
    row of the next level, cascading, so that no term has that many rows of a level (which holds after every
    write); dead documents' runs are dropped on the way. The caller holds the collection's write lock.
    Returns the rows merged."""
    merged, dead = 0, None
    # only the level just written can have grown; then only the level a merge wrote, of the merged terms
    groups = conn.execute(text(
        "SELECT term, 0 FROM kb_postings WHERE collection=:c AND level = 0 AND term = ANY(CAST(:t AS text[])) "
        "GROUP BY term HAVING count(*) >= :f"), {"c": collection, "t": terms, "f": MERGE_FANOUT}).all()
    while groups:
        dead = _dead(conn, collection) if dead is None else dead
        g = {"c": collection, "gt": [g[0] for g in groups], "gl": [g[1] for g in groups]}
        if not dead:  # nothing to drop: the server concatenates
            merged += conn.execute(_MERGE_SQL, g).scalar() or 0
        else:
            rows = conn.execute(text(
                "DELETE FROM kb_postings p USING unnest(CAST(:gt AS text[]), CAST(:gl AS smallint[])) "
                "AS g(term, level) WHERE p.collection=:c AND p.term=g.term AND p.level=g.level "
                "RETURNING p.term, p.level, p.doc_hash, p.docs, p.sizes, p.post"), g).all()
            merged += len(rows)
            _insert_merged(conn, collection, _runs(rows), dead)
        groups = conn.execute(text(
            "SELECT p.term, p.level FROM kb_postings p, unnest(CAST(:gt AS text[]), CAST(:gl AS smallint[])) "
            "AS g(term, level) WHERE p.collection=:c AND p.term=g.term AND p.level=g.level + 1 "
            "GROUP BY p.term, p.level HAVING count(*) >= :f"), {**g, "f": MERGE_FANOUT}).all()
    return merged


def forget_dead(conn, collection: str) -> int:
    """Drop the kb_dead rows of documents no merged row holds runs of any more (merges dropped them all), so
    merges go back to the server-side path and a re-added document skips the purge. One pass over the merged
    rows' document lists; run when a collection opens. Returns the rows dropped."""
    return conn.execute(text(
        "DELETE FROM kb_dead WHERE collection=:c AND doc_hash NOT IN "
        "(SELECT DISTINCT unnest(docs) FROM kb_postings WHERE collection=:c AND level > 0)"), {"c": collection}).rowcount


def purge_dead(conn, collection: str, hashes: list[str]) -> None:
    """Before a document is written again: take the runs a deletion left in merged rows out of them (else its
    postings would count twice), and its kb_dead row with them. The caller holds the write lock."""
    back = [h for (h,) in conn.execute(text(
        "DELETE FROM kb_dead WHERE collection=:c AND doc_hash = ANY(CAST(:h AS text[])) RETURNING doc_hash"),
        {"c": collection, "h": hashes})]
    if not back:
        return
    rows = conn.execute(text(
        "DELETE FROM kb_postings WHERE collection=:c AND level > 0 AND docs && CAST(:h AS text[]) "
        "RETURNING term, level - 1, doc_hash, docs, sizes, post"), {"c": collection, "h": back}).all()
    _insert_merged(conn, collection, _runs(rows), set(back))  # the same level again (level - 1 above)


def idf(n: int, df: int) -> float:
    return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))


def bm25(w: float | np.ndarray, rec: np.ndarray, avgdl: float) -> np.ndarray:
    """Each posting's BM25 contribution, its term's idf ``w``."""
    tf, ln = rec["tf"].astype(np.float64), rec["lnorm"].astype(np.float64)
    return w * tf * (K1 + 1) / (tf + K1 * (1 - B + B * ln / avgdl))


def keys(doc: np.ndarray, rec: np.ndarray) -> np.ndarray | None:
    """One int64 per passage (document number, page, start), or None where one does not fit the packing."""
    page, start = rec["page"].astype(np.int64), rec["start"].astype(np.int64)
    if len(rec) and (doc.max() >= 2**17 or page.max() >= 2**20 or start.max() >= 2**26
                     or page.min() < 0 or start.min() < 0):
        return None
    return (doc << 46) | (page << 26) | start


def ranked(key: np.ndarray, total: np.ndarray, docs: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` best (passage id, score) of passages ``key`` scoring ``total``: scores rounded to 9 decimals,
    every passage at least as good as the k-th kept, then ties go to the smaller id."""
    def name_of(i: int) -> str:
        kk = int(key[i])
        return f"{docs[kk >> 46][:16]}-{(kk >> 26) & (2**20 - 1)}-{kk & (2**26 - 1)}"

    return best_by_score(np.round(total, 9), k, name_of)


def _numbered(blocks, doc_no: dict[str, int]):
    """Per term of read_postings rows: (term, document number per posting, records)."""
    for term, hashes, sizes, data in blocks:
        rec = np.frombuffer(data, dtype=POSTING)
        doc = np.repeat(np.array([doc_no[h] for h in hashes], dtype=np.int64),
                        [size // POSTING.itemsize for size in sizes])
        yield term, doc, rec


def bm25_top(blocks, dfs: dict[str, int], n: int, ntok: int, k: int, active) -> list[tuple[str, float]]:
    """The ``k`` best (passage id, BM25 score) of ``active`` documents from read_postings rows, scored as
    tantivy does: k1 1.2, b 0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5)), one-byte length norms over the
    average of exact token counts. Ties (scores equal to 9 decimals) go to the smaller id."""
    n = max(n, 1)
    avgdl = max(ntok / n, 1.0)
    docs = sorted({h for b in blocks for h in b[1] if h in active})
    if not docs:
        return []
    doc_no = {h: i for i, h in enumerate(docs)}
    ds, rs, ws = [], [], []
    for term, doc, rec in _numbered([(t, [h if h in active else None for h in hs], s, d)
                                      for t, hs, s, d in blocks], {**doc_no, None: -1}):
        ok = doc >= 0
        ds.append(doc[ok])
        rs.append(rec[ok])
        ws.append(bm25(idf(n, dfs.get(term, 0)), rec[ok], avgdl))
    doc, rec, w = np.concatenate(ds), np.concatenate(rs), np.concatenate(ws)
    key = keys(doc, rec)
    if key is not None:  # one int64 per passage: a plain sort instead of one over rows
        uniq, inv = np.unique(key, return_inverse=True)
        return ranked(uniq, np.bincount(inv.ravel(), weights=w), docs, k)
    trip = np.stack([doc, rec["page"].astype(np.int64), rec["start"].astype(np.int64)], axis=1)
    uniq, inv = np.unique(trip, axis=0, return_inverse=True)
    return best_by_score(np.round(np.bincount(inv.ravel(), weights=w), 9), k,
                         lambda i: f"{docs[int(uniq[i, 0])][:16]}-{int(uniq[i, 1])}-{int(uniq[i, 2])}")


class PostingsCache:
    """One collection version's postings, decoded once (a question's postings cost more to read than to
    score). ``gen`` is the version: the ``xmin`` of the collection's kb_collections row, which every add and
    delete updates in its own transaction, so any write (on any replica) starts a new cache. A term keeps
    (passage numbers, BM25 contributions) arrays, constant within a version (N, average length and df are),
    so a question is one bincount over passage numbers; ``key_of`` maps a number to its passage (document,
    page, start). Terms are evicted least recently used beyond ``limit`` postings."""

    def __init__(self, gen: str, n: int, ntok: int, limit: int | None = None):
        self.gen, self.limit = gen, CACHE_POSTINGS if limit is None else limit
        self.n = max(n, 1)
        self.avgdl = max(ntok / self.n, 1.0)
        self.docs: list[str] = []
        self.doc_no: dict[str, int] = {}
        self.key_of = np.empty(0, np.int64)  # passage number -> key (document, page, start)
        self.terms: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # insertion order = least recently used first
        self.size = 0
        self.usable = True  # False once a passage does not fit the packing (the caller reads postings as before)

    def missing(self, terms) -> list[str]:
        """The terms not loaded yet; the loaded ones become the most recently used."""
        for t in terms:
            if t in self.terms:
                self.terms[t] = self.terms.pop(t)
        return [t for t in terms if t not in self.terms]

    def load(self, blocks, dfs: dict[str, int]) -> bool:
        """Add the terms of these read_postings rows (every document's); False if they do not fit."""
        if not blocks:
            return True
        total = sum(size // POSTING.itemsize for b in blocks for size in b[2])
        if total > self.limit:
            return False
        for h in sorted({h for b in blocks for h in b[1]}):
            if h not in self.doc_no:
                self.doc_no[h] = len(self.docs)
                self.docs.append(h)
        for term, doc, rec in _numbered(blocks, self.doc_no):
            key, pno = keys(doc, rec), rec["pno"].astype(np.int64)
            if key is None or (len(pno) and (pno.min() < 0 or pno.max() >= 2**31 - 1)):
                self.usable = False
                return False
            if len(pno) and pno.max() >= len(self.key_of):
                grown = np.full(max(int(pno.max()) + 1, 2 * len(self.key_of)), -1, np.int64)
                grown[: len(self.key_of)] = self.key_of
                self.key_of = grown
            self.key_of[pno] = key
            self.terms[term] = (pno, bm25(idf(self.n, dfs.get(term, 0)), rec, self.avgdl))
            self.size += len(pno)
        while self.size > self.limit:  # the least recently used terms go
            term = next(iter(self.terms))
            self.size -= len(self.terms.pop(term)[0])
        return True

    def top(self, terms, active, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (passage id, score) of active documents, as bm25_top ranks them."""
        have = [t for t in terms if t in self.terms]
        if not have:
            return []
        ids = np.concatenate([self.terms[t][0] for t in have])
        w = np.concatenate([self.terms[t][1] for t in have])
        ok_doc = np.fromiter((h in active for h in self.docs), dtype=bool, count=len(self.docs))
        ok = ok_doc[self.key_of[ids] >> 46]
        ids, w = ids[ok], w[ok]
        if not len(ids):
            return []
        total = np.bincount(ids, weights=w, minlength=len(self.key_of))
        hit = np.zeros(len(self.key_of), dtype=bool)
        hit[ids] = True
        cand = np.flatnonzero(hit)
        return ranked(self.key_of[cand], total[cand], self.docs, k)

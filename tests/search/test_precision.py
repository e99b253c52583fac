"""`KBCHAT_EMBEDDING_PRECISION=auto`: the fidelity gate, the measurement, the per-CPU cache of the choice,
and collections searched by another variant of the same model. The real bundled model runs; where a
variant must be faster or worse than it is on this CPU, an encoder built on the real one stands in."""

import json

import numpy as np
import pytest

from kbchat.search import precision as P
from kbchat.errors import EmbedderMismatch
from kbchat.documents.pdf import read_pdf
from kbchat.search.probes import PASSAGES, QUESTIONS
from kbchat.settings import Settings
from kbchat.search.embedder import LocalEmbedder, choose_variant
from kbchat.search.store import EmbeddedStore
from kbchat.search.loaders import load_embedder

CPU_A = P.CpuInfo("Test CPU A", ("avx2", "fma"), 2)
CPU_B = P.CpuInfo("Test CPU B", ("amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512f"), 2)


@pytest.fixture(scope="module")
def fp32():
    """The real bundled model, fp32, questions through torch (nothing to measure unless asked)."""
    return load_embedder(Settings(embedding_precision="fp32", query_backend="torch"))


@pytest.fixture(scope="module")
def lookup(fp32):
    """encode(texts) from the probes' real fp32 vectors, computed once (the model is slow on 2 shared
    cores; the gate's arithmetic is what these tests exercise)."""
    texts = PASSAGES + QUESTIONS
    vecs = dict(zip(texts, fp32._encode(texts, "fp32")))
    return lambda batch: np.stack([vecs[t] for t in batch])


@pytest.fixture(scope="module")
def bf16_fidelity(fp32):
    """The real bf16 (autocast) vectors of the probes against fp32: within the gate."""
    fid = fp32.variant_fidelity("bf16")
    assert fid.passes(), fid
    return fid


class Variant(LocalEmbedder):
    """The loaded model run in another variant (no second load)."""

    def __init__(self, inner, precision, requested=None):
        self.__dict__.update(inner.__dict__)
        self.precision = precision
        self.requested_precision = requested or precision
        self.requested_query_backend = self.query_backend
        self.choice, self.choice_source, self._fidelity = None, "explicit setting", None


class FakeClock:
    """Time that passes only when an encoder says so: speeds are set by the test, not by the machine."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def encoder(self, encode, seconds_per_text: float, noise: float = 0.0):
        rng = np.random.default_rng(7)

        def run(texts):
            self.t += seconds_per_text * len(texts)
            v = encode(texts)
            if noise:
                v = v + rng.normal(scale=noise, size=v.shape).astype(np.float32)
                v /= np.linalg.norm(v, axis=1, keepdims=True)
            return v

        return run


def test_fidelity_of_identical_and_perturbed_vectors(lookup):
    ref = lookup(PASSAGES + QUESTIONS)
    same = P.fidelity(ref, ref.copy(), n_passages=len(PASSAGES))
    assert same.min_cosine > 0.99999 and same.top10_overlap == 1.0 and same.passes()
    rng = np.random.default_rng(0)
    noisy = ref + rng.normal(scale=0.02, size=ref.shape)
    bad = P.fidelity(ref, noisy, n_passages=len(PASSAGES))
    assert bad.min_cosine < P.GATE_MIN_COSINE and not bad.passes()
    assert "min cosine" in bad.why_not()


def test_the_gate_refuses_a_faster_variant_whose_vectors_drift(lookup):
    """A variant 3x faster but with vectors outside the gate is refused; a faster one within it wins."""
    clock = FakeClock()
    encoders = {
        "fp32": clock.encoder(lookup, 0.03),
        "drifting": clock.encoder(lookup, 0.01, noise=0.02),   # like int8 static: fast, not faithful
        "faithful": clock.encoder(lookup, 0.015, noise=1e-4),  # like bf16 with AMX
    }
    chosen, results = P.measure_variants(encoders, PASSAGES, QUESTIONS, clock=clock)
    by = {r.name: r for r in results}
    assert chosen == "faithful"
    assert by["drifting"].verdict.startswith("refused by the fidelity gate")
    assert by["drifting"].fidelity.min_cosine < P.GATE_MIN_COSINE
    assert by["faithful"].fidelity.passes() and by["faithful"].verdict == "chosen"
    assert by["fp32"].verdict == "within the gate, slower than faithful"
    assert by["faithful"].passages_per_s == pytest.approx(2 * by["fp32"].passages_per_s)


def test_a_slower_variant_is_refused_without_a_fidelity_run(lookup):
    """What happens to bf16 on a CPU without native bf16 (this one): slower, so fp32 stays."""
    clock = FakeClock()
    calls = []

    def slow(texts):
        calls.append(len(texts))
        clock.t += 0.1 * len(texts)
        return lookup(texts)

    encoders = {"fp32": clock.encoder(lookup, 0.03), "bf16": slow}
    chosen, results = P.measure_variants(encoders, PASSAGES, QUESTIONS, clock=clock)
    assert chosen == "fp32"
    bf16 = results[1]
    assert bf16.verdict.startswith("refused: 0.30x fp32") and bf16.fidelity is None
    assert calls == [4, 16]  # warm-up + one timed pass (already 2x slower): never the full probe set


def test_a_variant_that_cannot_run_is_refused(lookup):
    def broken(texts):
        raise RuntimeError("no bf16 kernels")

    chosen, results = P.measure_variants({"fp32": lookup, "bf16": broken}, PASSAGES[:12])
    assert chosen == "fp32" and "cannot run" in results[1].verdict and "no bf16 kernels" in results[1].error


def test_choice_is_cached_per_cpu_and_another_cpu_measures_again(fp32, lookup, tmp_path):
    def candidates():
        return {"fp32": lookup, "bf16": lookup}

    def _embedder():
        return Variant(fp32, "fp32", requested="auto")

    emb = _embedder()
    choose_variant(emb, tmp_path, cpu=CPU_A, candidates=candidates())
    assert emb.choice_source == "measured now" and emb.precision in ("fp32", "bf16")
    files = list(tmp_path.glob("embedder-choice-*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["cpu"]["model"] == "Test CPU A" and saved["variant"] == emb.precision
    assert {r["name"] for r in saved["results"]} == {"fp32", "bf16"}

    def must_not_run(texts):
        raise AssertionError("measured again on the same CPU")

    again = _embedder()
    choose_variant(again, tmp_path, cpu=CPU_A, candidates={"fp32": must_not_run, "bf16": must_not_run})
    assert again.choice_source.startswith("cached embedder-choice-") and again.precision == emb.precision

    other = _embedder()
    choose_variant(other, tmp_path, cpu=CPU_B, candidates=candidates())
    assert other.choice_source == "measured now"
    assert len(list(tmp_path.glob("embedder-choice-*.json"))) == 2
    assert P.choice_key(CPU_A, emb.fingerprint()) != P.choice_key(CPU_B, emb.fingerprint())

    files[0].write_text("{not json")  # damaged: measured again, not trusted
    third = _embedder()
    choose_variant(third, tmp_path, cpu=CPU_A, candidates=candidates())
    assert third.choice_source == "measured now"
    assert json.loads(files[0].read_text())["cpu"]["model"] == "Test CPU A"


def test_explicit_precisions_stay_and_measure_nothing(fp32, tmp_path):
    for precision in ("fp32", "bf16"):
        emb = Variant(fp32, precision)
        choose_variant(emb, tmp_path, cpu=CPU_A)
        assert emb.precision == precision and emb.choice is None
        assert emb.describe()["source"] == "explicit setting"
    assert not list(tmp_path.iterdir())


def test_auto_on_this_cpu_measures_the_real_variants_and_questions(fp32):
    """The real measurement, as load_embedder runs it: a describe() the app can log, a choice within
    the gate, and questions on whichever path was faster per question (with torch's vectors)."""
    cache = Settings().model_cache_path()  # the test run's shared cache: the ONNX graph is exported once
    emb = Variant(fp32, "fp32", requested="auto")
    emb.requested_query_backend = "auto"
    choose_variant(emb, cache, remeasure=True)
    d = emb.describe()
    assert d["requested_precision"] == "auto" and d["variant"] in P.VARIANTS
    assert set(d["variants"]) == {"fp32", "bf16", "onnx"} and d["variants"]["fp32"]["passages_per_s"] > 0
    assert d["variants"][d["variant"]]["verdict"] == "chosen"
    assert d["cpu"]["model"] == P.cpu_info().model
    assert {"torch", "onnx"} <= set(d["query_ms"]) and d["query_backend"] in ("torch", "onnx")
    torch_ms = d["query_ms"]["torch"]
    assert torch_ms["p50"] > 0 and torch_ms["p95"] >= torch_ms["p50"]
    if d["variant"] == "bf16":
        assert d["variants"]["bf16"]["min_cosine"] >= P.GATE_MIN_COSINE
    if d["variant"] == "onnx":
        assert d["variants"]["onnx"]["min_cosine"] >= P.GATE_MIN_COSINE
    if not P.cpu_info().has_bf16:  # this CPU emulates bf16: slower, so refused
        assert d["variant"] != "bf16" and d["variants"]["bf16"]["verdict"].startswith("refused")
    assert "embedder bundled:all-MiniLM-L6-v2" in emb.summary()
    q = "What is the memory bandwidth of the A100?"
    assert np.abs(emb.encode_query(q) - emb._encode([q], "fp32")[0]).max() < (
        1e-4 if d["variant"] in ("fp32", "onnx") else 2e-2)
    saved = P.load_choice(P.cache_file(cache, P.choice_key(P.cpu_info(), emb.fingerprint())))
    assert saved.variant == d["variant"] and emb.precision in saved.queries


def test_onnx_passages_are_torch_fp32_vectors(fp32):
    """The "onnx" variant runs the fp32 graph through ONNX Runtime in batches of similar token length (padded
    within a batch): the probes get torch fp32's vectors, so it passes the gate, and a collection written in
    either is searched by the other."""
    emb = Variant(fp32, "onnx")
    emb._cache_dir = Settings().model_cache_path()  # the test run's shared cache: exported once
    texts = PASSAGES + QUESTIONS  # more than a batch: several padded batches
    got, ref = emb.encode_passages(texts), fp32._encode(texts, "fp32")
    assert got.shape == ref.shape == (len(texts), fp32.dim) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    fid = emb.variant_fidelity("onnx")
    assert fid.passes() and fid.min_cosine > 0.99999 and fid.top10_overlap == 1.0
    assert emb.vectors_compatible("fp32") == "" and Variant(fp32, "fp32").vectors_compatible("onnx") == ""


def test_a_collection_built_in_one_variant_is_searched_in_another_or_refused(fp32, bf16_fidelity, tmp_path,
                                                                               pdf_factory, monkeypatch):
    pdf = pdf_factory("zebra.pdf", ["The zebra protocol uses port 7777 for all traffic.",
                                    "Walruses sleep on ice floes in the Arctic.",
                                    "Expense claims above 500 euros need approval."])
    bf16 = Variant(fp32, "bf16")
    store = EmbeddedStore(tmp_path / "data", bf16)
    store.collection("kb").add(read_pdf(pdf))
    store.close()

    reader = EmbeddedStore(tmp_path / "data", Variant(fp32, "fp32"))
    reader.embedder._fidelity = {"bf16": bf16_fidelity}  # measured once by the fixture
    kb = reader.collection("kb")  # bf16 vectors, fp32 questions: within the gate
    hits = kb.dense(fp32.encode_query("which port does the zebra protocol use"), 3)
    assert hits[0][0].page == 1 and "7777" in hits[0][0].text
    assert kb._chroma.metadata["embedder_variant"] == "bf16"
    reader.close()

    monkeypatch.setattr(P, "GATE_MIN_COSINE", 0.9999999)  # a gate bf16 cannot pass
    strict = Variant(fp32, "fp32")
    strict._fidelity = {"bf16": bf16_fidelity}
    with pytest.raises(EmbedderMismatch) as ei:
        EmbeddedStore(tmp_path / "data", strict).collection("kb")
    msg = str(ei.value)
    assert "built with bundled:all-MiniLM-L6-v2 in bf16" in msg and "runs it in fp32" in msg
    assert "KBCHAT_EMBEDDING_PRECISION=bf16" in msg and "\n" not in msg


def test_cpu_info_reads_model_and_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                 "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
                 "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n")
    cpu = P.cpu_info(f)
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8480+" and cpu.has_amx and cpu.has_bf16
    assert cpu.notable == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
    missing = P.cpu_info(tmp_path / "nope")
    assert missing.model and missing.flags == () and not missing.has_bf16


def test_sentence_transformers_is_imported_without_scikit_learn():
    """Cold start: the embedder's import skips scikit-learn / SciPy (seconds of every CLI start), and a
    later `import sklearn.metrics` still gets the real module."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys\n"
            "from kbchat.search.embedder import import_sentence_transformers\n"
            "st = import_sentence_transformers()\n"
            "assert hasattr(st, 'SentenceTransformer')\n"
            "print('sklearn' in sys.modules, 'scipy.stats' in sys.modules)\n"
            "import sklearn.metrics\n"
            "print(sklearn.metrics.pairwise_distances.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = out.stdout.split("\n")[:2]
    assert first == "False False"
    assert second.startswith("sklearn.metrics")

"""Which way of running the embedder is fastest on this CPU without changing its vectors: the CPU key,
the fidelity gate against fp32, the measurement on probe texts, and the per-CPU cache of the choice.

No model imports here: the Embedder (kbchat.search.store) hands in plain encode functions, so the gate and the
choice can be tested with any encoder. The choice is cached as JSON in the model cache dir, one file per
CPU model + flags + logical CPU count + model files + library versions: another CPU measures again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

log = logging.getLogger("kbchat.precision")

GATE_MIN_COSINE = 0.999   # every probe's vector within this cosine of its fp32 vector
GATE_MIN_OVERLAP = 0.98   # mean share of each probe's 10 nearest probe passages kept
NEIGHBOURS = 10
MIN_SPEEDUP = 1.10        # another variant replaces fp32 only if this much faster (timing noise)
# What the Embedder can run; fp32 (torch) is the reference. "onnx": the same fp32 graph through ONNX Runtime
# (issue 26: 1.71x torch fp32 on an AMD EPYC without AMX, identical vectors).
VARIANTS = ("fp32", "bf16", "onnx")
CACHE_VERSION = 2  # 2: onnx measured too (a choice cached before it is measured again)

# Flags that decide what runs fast (bf16: AMX tiles or AVX-512 BF16; int8: VNNI).
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                 "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU the measurement holds for: model name, feature flags, logical CPUs."""

    model: str
    flags: tuple[str, ...]
    count: int

    @property
    def notable(self) -> list[str]:
        """The flags that matter for the embedder's variants, in a fixed order."""
        return [f for f in NOTABLE_FLAGS if f in self.flags]

    @property
    def has_amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def has_bf16(self) -> bool:
        """Native bf16 arithmetic (AMX tiles or AVX-512 BF16); without it bf16 is emulated."""
        return "amx_bf16" in self.flags or "avx512_bf16" in self.flags


def cpu_info(cpuinfo: Path | str = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU, from /proc/cpuinfo on Linux (platform.processor() elsewhere)."""
    model, flags = "", ()
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name == "model name" and not model:
                model = value.strip()
            elif name in ("flags", "Features") and not flags:
                flags = tuple(sorted(set(value.split())))
            if model and flags:
                break
    except OSError:
        pass
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown",
                   flags, os.cpu_count() or 1)


@dataclass
class Fidelity:
    """How close a variant's vectors are to fp32's on the probes."""

    min_cosine: float
    mean_cosine: float
    top10_overlap: float

    def passes(self) -> bool:
        return self.min_cosine >= GATE_MIN_COSINE and self.top10_overlap >= GATE_MIN_OVERLAP

    def why_not(self) -> str:
        """'' if the gate passes, else which bound failed."""
        bad = []
        if self.min_cosine < GATE_MIN_COSINE:
            bad.append(f"min cosine {self.min_cosine:.4f} < {GATE_MIN_COSINE}")
        if self.top10_overlap < GATE_MIN_OVERLAP:
            bad.append(f"top-{NEIGHBOURS} overlap {self.top10_overlap:.3f} < {GATE_MIN_OVERLAP}")
        return "; ".join(bad)


def fidelity(ref: np.ndarray, got: np.ndarray, n_passages: int | None = None,
             k: int = NEIGHBOURS) -> Fidelity:
    """Cosine of each vector to its reference, and the mean share of each text's ``k`` nearest
    passages (the first ``n_passages`` rows, the text itself excluded) that stays the same."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    n = len(ref) if n_passages is None else n_passages
    k = min(k, n - 1)
    overlaps = []
    if k > 0:
        for vecs in (ref, got):
            sims = vecs @ vecs[:n].T
            for i in range(min(len(vecs), n)):
                sims[i, i] = -np.inf  # a passage is not its own neighbour
            overlaps.append(np.argsort(-sims, axis=1, kind="stable")[:, :k])
        share = [len(set(a) & set(b)) / k for a, b in zip(*overlaps)]
    else:
        share = [1.0]
    return Fidelity(float(cos.min()), float(cos.mean()), float(np.mean(share)))


@dataclass
class VariantResult:
    """One variant's measurement: speed on the probes, fidelity to fp32, and the verdict."""

    name: str
    passages_per_s: float
    seconds: float
    fidelity: Fidelity | None = None
    verdict: str = ""          # "chosen", "passes the gate, slower", "refused: ..."
    error: str = ""


@dataclass
class Choice:
    """What was chosen on one CPU, and the measurements behind it (cached as JSON)."""

    variant: str
    cpu: CpuInfo
    results: list[VariantResult] = field(default_factory=list)
    # per variant: {"torch": {"p50": ms, "p95": ms}, "onnx": {...}, "chosen": "onnx"|"torch"}
    queries: dict = field(default_factory=dict)
    measured_at: str = ""
    key: str = ""
    probes: int = 0

    def result(self, name: str) -> VariantResult | None:
        return next((r for r in self.results if r.name == name), None)

    @property
    def speedup(self) -> float:
        """Chosen variant's passages/s over fp32's on the probes (1.0 when fp32 was chosen)."""
        base, got = self.result("fp32"), self.result(self.variant)
        if not base or not got or not base.passages_per_s:
            return 1.0
        return got.passages_per_s / base.passages_per_s

    def to_json(self) -> dict:
        d = asdict(self)
        d["cpu"]["flags"] = list(self.cpu.flags)
        d["cache_version"] = CACHE_VERSION
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Choice":
        if d.get("cache_version") != CACHE_VERSION:
            raise ValueError(f"cache version {d.get('cache_version')!r}")
        cpu = CpuInfo(d["cpu"]["model"], tuple(d["cpu"]["flags"]), int(d["cpu"]["count"]))
        results = []
        for r in d.get("results", []):
            fid = Fidelity(**r["fidelity"]) if r.get("fidelity") else None
            results.append(VariantResult(r["name"], float(r["passages_per_s"]), float(r["seconds"]), fid,
                                         r.get("verdict", ""), r.get("error", "")))
        return cls(d["variant"], cpu, results, dict(d.get("queries") or {}), d.get("measured_at", ""),
                   d.get("key", ""), int(d.get("probes", 0)))


def choice_key(cpu: CpuInfo, model_fingerprint: str) -> str:
    """Cache key of a choice: the CPU (model, all flags, logical CPUs) and the model + library versions."""
    h = hashlib.sha256()
    h.update(json.dumps([cpu.model, list(cpu.flags), cpu.count, model_fingerprint, CACHE_VERSION]).encode())
    return h.hexdigest()[:20]


def cache_file(cache_dir: Path | str, key: str) -> Path:
    return Path(cache_dir) / f"embedder-choice-{key}.json"


def load_choice(path: Path) -> Choice | None:
    """The cached choice at ``path``, or None (missing, unreadable or of another version)."""
    try:
        return Choice.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged or old file is measured again, never trusted
        log.info("ignoring the cached embedder choice %s (%s: %s)", path, type(exc).__name__, exc)
        return None


def save_choice(path: Path, choice: Choice) -> None:
    """Write atomically (concurrent processes never read half a file); failures only log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(choice.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.info("could not cache the embedder choice at %s: %s", path, exc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def speed_slice(texts: list[str], n: int = 16) -> list[str]:
    """Every k-th text of at most 500 characters, ``n`` in all: the mix of Latin and CJK, passages and
    questions the speed is timed on (one long text would pad a whole batch to 256 word pieces)."""
    short = [t for t in texts if len(t) <= 500]
    step = max(1, len(short) // n)
    return short[::step][:n]


def measure_variants(
    encoders: dict[str, Callable[[list[str]], np.ndarray]],
    passages: list[str],
    questions: Iterable[str] = (),
    *,
    runs: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[str, list[VariantResult]]:
    """Time each encoder on a slice of the probes, gate the faster ones against ``encoders["fp32"]`` on
    all probes; return the chosen variant (the fastest within the gate; fp32 unless another is
    MIN_SPEEDUP faster) and the results.

    Each encoder runs once to warm up, then ``runs`` interleaved timed passes over the slice (the best
    counts); a variant already 2x slower than fp32 after one pass is not timed again, and one that is not
    faster than fp32 is refused without its fidelity measured (the slow part on a CPU that emulates it).
    Fidelity covers passages + questions; neighbours are taken among the passages.
    """
    texts = list(passages) + list(questions)
    timed = speed_slice(texts)
    if "fp32" not in encoders:
        raise ValueError("the fp32 encoder is the reference and must be given")
    order = ["fp32"] + [n for n in encoders if n != "fp32"]
    best: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in order:
        try:
            encoders[name](texts[:4])  # warm-up: first-call allocations, kernel selection
        except Exception as exc:  # a variant that cannot run here is refused, not fatal
            if name == "fp32":
                raise  # the reference itself: load_embedder reports it and runs fp32 as before
            failed[name] = f"{type(exc).__name__}: {exc}"
    # Rounds interleave the variants (fp32, bf16, fp32, bf16, ...) so that a change in the machine's load
    # hits all of them alike; the best pass of each counts.
    for _ in range(max(1, runs)):
        for name in order:
            if name in failed or (name in best and name != "fp32" and best[name] > 2 * best["fp32"]):
                continue  # already 2x slower than fp32: not timed again
            try:
                t0 = clock()
                encoders[name](timed)
                best[name] = min(best.get(name, float("inf")), max(clock() - t0, 1e-9))
            except Exception as exc:
                if name == "fp32":
                    raise
                failed[name] = f"{type(exc).__name__}: {exc}"
    results: list[VariantResult] = []
    for name in order:
        if name in failed:
            results.append(VariantResult(name, 0.0, 0.0, error=failed[name],
                                         verdict=f"refused: cannot run ({failed[name]})"))
        else:
            results.append(VariantResult(name, len(timed) / best[name], best[name]))
    results[0].fidelity = Fidelity(1.0, 1.0, 1.0)
    base = results[0]
    ref = None
    chosen = base
    for r in results[1:]:
        if r.error:
            continue
        speed = r.passages_per_s / base.passages_per_s
        if speed < MIN_SPEEDUP:
            r.verdict = f"refused: {speed:.2f}x fp32 (needs {MIN_SPEEDUP:.2f}x); fidelity not measured"
            continue
        try:
            if ref is None:
                ref = encoders["fp32"](texts)
            r.fidelity = fidelity(ref, encoders[r.name](texts), n_passages=len(passages))
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"
            r.verdict = f"refused: cannot run ({r.error})"
            continue
        if not r.fidelity.passes():
            r.verdict = f"refused by the fidelity gate: {r.fidelity.why_not()} ({speed:.2f}x fp32)"
        elif r.passages_per_s > chosen.passages_per_s:
            chosen = r
    for r in results:
        if r is chosen:
            r.verdict = "chosen"
        elif not r.verdict:
            r.verdict = f"within the gate, slower than {chosen.name}"
    return chosen.name, results


def measure_queries(
    encoders: dict[str, Callable[[str], np.ndarray]],
    questions: list[str],
    *,
    rounds: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """p50 / p95 milliseconds of one question at a time per encoder, and the one chosen (lowest p50;
    ties within 5% go to the first given)."""
    out: dict = {}
    for name, enc in encoders.items():
        try:
            enc(questions[0])
            enc(questions[-1])
            ms = []
            for _ in range(rounds):
                for q in questions:
                    t0 = clock()
                    enc(q)
                    ms.append((clock() - t0) * 1000)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = {"p50": round(float(np.percentile(ms, 50)), 3),
                     "p95": round(float(np.percentile(ms, 95)), 3)}
    timed = [n for n in encoders if "p50" in out.get(n, {})]
    if timed:
        first = timed[0]
        best = min(timed, key=lambda n: out[n]["p50"])
        out["chosen"] = first if out[first]["p50"] <= out[best]["p50"] * 1.05 else best
    return out


def describe(choice: Choice | None, *, variant: str, requested: str, query_backend: str,
             source: str, model: str) -> dict:
    """The data the app logs at start-up and `kbchat doctor` prints."""
    d: dict = {"model": model, "requested_precision": requested, "variant": variant,
               "query_backend": query_backend, "source": source,
               "gate": {"min_cosine": GATE_MIN_COSINE, "top10_overlap": GATE_MIN_OVERLAP}}
    if choice is not None:
        d["cpu"] = {"model": choice.cpu.model, "flags": choice.cpu.notable, "count": choice.cpu.count}
        d["measured_at"] = choice.measured_at
        d["probes"] = choice.probes
        d["variants"] = {r.name: {"passages_per_s": round(r.passages_per_s, 1),
                                  "vs_fp32": round(r.passages_per_s / choice.results[0].passages_per_s, 2)
                                  if choice.results and choice.results[0].passages_per_s else None,
                                  "min_cosine": round(r.fidelity.min_cosine, 5) if r.fidelity else None,
                                  "top10_overlap": round(r.fidelity.top10_overlap, 4) if r.fidelity else None,
                                  "verdict": r.verdict}
                         for r in choice.results}
        d["speedup_vs_fp32"] = round(choice.speedup, 2) if choice.result(variant) else None
        q = choice.queries.get(variant)
        if q:
            d["query_ms"] = {k: v for k, v in q.items() if k != "chosen"}
    return d


def summary(d: dict) -> str:
    """One log line from describe()'s dict."""
    runs = "ONNX Runtime fp32" if d["variant"] == "onnx" else f"torch {d['variant']}"
    parts = [f"embedder {d['model']}: {runs} ({d['requested_precision']}, {d['source']})"]
    v = d.get("variants") or {}
    if d["variant"] in v:
        parts.append(f"{v[d['variant']]['passages_per_s']} probe passages/s, "
                     f"{d.get('speedup_vs_fp32') or 1.0:.2f}x fp32")
    for name, r in v.items():
        if name != d["variant"] and r["verdict"]:
            parts.append(f"{name} {r['verdict']}")
    q = d.get("query_ms", {}).get(d["query_backend"])
    p50 = f" (p50 {q['p50']:.1f} ms)" if q and "p50" in q else ""
    parts.append(f"questions via {d['query_backend']}{p50}")
    if "cpu" in d:
        parts.append(f"CPU {d['cpu']['model']} [{' '.join(d['cpu']['flags']) or 'no AVX-512/AMX'}]")
    return "; ".join(parts)

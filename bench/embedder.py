"""Embedder variants on the same passages: which way of running all-MiniLM-L6-v2 is fastest here, and
what it costs in vector fidelity. The evidence behind kbchat's choice, and the choice `auto` made here.

    python bench/embedder.py            # the real corpus's kbchat passages (679), 2 timed runs each
    python bench/embedder.py --quick    # 120 passages, 1 run

First the CPU and what KBCHAT_EMBEDDING_PRECISION=auto chose on it (measured on kbchat's probe texts, or
read from the cache in $KBCHAT_BENCH_DIR/models), with its speed-up and fidelity figures.
Then the variants, all on the same passages, each after one warm-up pass (a 32-passage one for bf16):
- sentence-transformers' own `encode` (batch 32; it orders texts by character length);
- kbchat's Embedder (torch, batches of similar token length, KBCHAT_EMBEDDING_BATCH_SIZE), fp32 and bf16
  (torch autocast: what KBCHAT_EMBEDDING_PRECISION=bf16 runs);
- the same batches through ONNX Runtime fp32 (kbchat's exported graph, as used for questions);
- ONNX Runtime int8, dynamic quantisation of the MatMul weights per output channel, and per tensor.
Fidelity: cosine of each vector to sentence-transformers' fp32 vector (min and mean) and the share of each
passage's 10 nearest passages that stays the same; the gate auto applies is min cosine >= 0.999 and
top-10 overlap >= 0.98. Last, one question at a time (the dev set's questions): p50 / p95 per path.
The ONNX graphs are exported offline into a scratch folder; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def embedder_table(d: dict) -> str:
    """Embedder.describe()'s variants and question paths as markdown tables (also used by ingest.py)."""
    rows = [[name, f"{v['passages_per_s']:.1f}", f"{v['vs_fp32']:.2f}×" if v["vs_fp32"] else "",
             "" if v["min_cosine"] is None else f"{v['min_cosine']:.5f}",
             "" if v["top10_overlap"] is None else f"{v['top10_overlap']:.4f}", v["verdict"]]
            for name, v in d.get("variants", {}).items()]
    out = C.table(["variant (torch)", "probe passages/s", "vs fp32",
                   f"min cosine to fp32 (gate ≥ {d['gate']['min_cosine']})",
                   f"top-10 overlap (gate ≥ {d['gate']['top10_overlap']})", "verdict"], rows)
    q = d.get("query_ms") or {}
    if q:
        out += "\n\n" + C.table(["question path (probe questions)", "p50 ms", "p95 ms", ""],
                                 [[k, v.get("p50", ""), v.get("p95", ""),
                                   "chosen" if k == d["query_backend"] else v.get("error", "")]
                                  for k, v in q.items()])
    return out


def _timed(fn, runs: int, warm=None) -> tuple[float, object]:
    out, secs = None, []
    (warm or fn)()  # warm-up pass
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return C.median(secs), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="120 passages, one timed run")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per variant (median)")
    args = ap.parse_args()

    import logging

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from kbchat.search.precision import cpu_info, fidelity
    from kbchat.search.embedder import OnnxQueryEncoder, length_batches, token_lengths
    from kbchat.search.loaders import load_embedder

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's pre-processing hint
    cpu = cpu_info()
    auto = load_embedder(C.kbchat_settings(embedding_precision="auto", query_backend="auto",
                                           model_cache_dir=C.WORK / "models"))
    d = auto.describe()
    settings = C.kbchat_settings(embedding_precision="fp32", query_backend="onnx")
    texts = C.kbchat_passage_texts(C.corpus_pdfs(), settings)
    runs = 1 if args.quick else args.runs
    if args.quick:
        texts = texts[:: max(1, len(texts) // 120)][:120]
    emb = load_embedder(settings)
    model = emb.model
    print("# bench/embedder.py")
    print(C.machine_line())
    print(f"CPU: {cpu.model}, {cpu.count} logical CPUs; flags: {' '.join(cpu.notable) or 'none notable'} "
          f"(AMX: {'yes' if cpu.has_amx else 'no'}, native bf16: {'yes' if cpu.has_bf16 else 'no'})\n")
    print(f"## KBCHAT_EMBEDDING_PRECISION=auto chose torch {d['variant']}, "
          f"questions via {d['query_backend']} "
          f"({d['source']}; {d.get('probes')} probe texts)")
    print(embedder_table(d) + "\n")
    lengths = token_lengths(model, texts)
    print(f"{len(texts)} kbchat passages of the real corpus; word pieces per passage: median "
          f"{int(np.median(lengths))}, max {max(lengths)}; batch size {emb.batch_size}; "
          f"{runs} timed run(s)\n",
          flush=True)

    def st_default():
        return model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)

    base_s, ref = _timed(st_default, runs)
    rows = [["sentence-transformers encode (character order, batch 32)", base_s, ref]]
    s, v = _timed(lambda: emb.encode_passages(texts), runs)
    rows.append([f"kbchat Embedder: torch fp32, token-length batches of {emb.batch_size}", s, v])
    s, v = _timed(lambda: emb._encode(texts, "bf16"), 1, warm=lambda: emb._encode(texts[:32], "bf16"))
    rows.append([f"kbchat Embedder: torch bf16 (autocast), token-length batches of {emb.batch_size} "
                 "(1 timed run)", s, v])

    with tempfile.TemporaryDirectory(prefix="kbchat-bench-onnx-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(OnnxQueryEncoder.export(emb))
        graphs = {"ONNX Runtime fp32, same batches": fp32}
        for label, per_channel in (("per channel", True), ("per tensor", False)):
            dst = Path(tmp) / f"int8-{per_channel}.onnx"
            quantize_dynamic(fp32, dst, weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=["MatMul"],
                             extra_options={"MatMulConstBOnly": True,
                                            "DefaultTensorType": onnx.TensorProto.FLOAT})
            graphs[f"ONNX Runtime int8 ({label}), same batches"] = dst
        batches = length_batches(lengths, emb.batch_size)
        for label, path in graphs.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 2, 1, 3
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            names = [i.name for i in sess.get_inputs()]

            pre = getattr(model, "preprocess", None) or model.tokenize

            def run(sess=sess, names=names, pre=pre):
                out = np.zeros((len(texts), emb.dim), dtype=np.float32)
                for idx in batches:
                    feats = pre([texts[i] for i in idx])
                    out[idx] = sess.run(None, {k: feats[k].numpy().astype(np.int64) for k in names})[0]
                return out

            s, v = _timed(run, runs)
            rows.append([label, s, v])
            del sess

    table = []
    kb_s = rows[1][1]
    for label, secs, vecs in rows:
        f = fidelity(ref, vecs)
        table.append([label, f"{secs:.1f}", f"{len(texts) / secs:.1f}", f"{base_s / secs:.2f}×",
                      f"{kb_s / secs:.2f}×", f"{f.min_cosine:.5f} / {f.mean_cosine:.5f}",
                      f"{f.top10_overlap:.4f}", "passes" if f.passes() else "fails: " + f.why_not()])
    print(C.table(["variant", "seconds", "passages/s", "speed vs sentence-transformers",
                   "vs kbchat torch fp32", "cosine to fp32, min / mean", "top-10 overlap", "gate"], table))

    # one question at a time, per path
    import json

    qs = [json.loads(line)["question"] for line in open(C.QUESTIONS, encoding="utf-8") if line.strip()]
    qs = qs[: 20 if args.quick else 60]
    onnx = OnnxQueryEncoder.load_or_export(emb, settings.model_cache_path())
    paths = {"torch fp32": lambda q: emb._encode([q], "fp32")[0],
             "torch bf16 (autocast)": lambda q: emb._encode([q], "bf16")[0],
             "ONNX Runtime fp32 (kbchat's query encoder)": onnx.encode}
    qrows = []
    for label, enc in paths.items():
        enc(qs[0])
        ms = []
        for q in qs:
            t0 = time.perf_counter()
            enc(q)
            ms.append((time.perf_counter() - t0) * 1000)
        qrows.append([label, f"{C.pct(ms, 50):.1f}", f"{C.pct(ms, 95):.1f}"])
    print(f"\n## One question at a time ({len(qs)} dev-set questions, after one warm-up)")
    print(C.table(["path", "p50 ms", "p95 ms"], qrows))
    print(f"\nkbchat embeds passages with the variant `auto` chose on this CPU (torch {d['variant']}) and "
          f"questions via {d['query_backend']}: the fastest within the fidelity gate, as measured on its "
          "probe "
          "texts.")


if __name__ == "__main__":
    main()

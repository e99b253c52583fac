"""Embedder variants on the same passages: which way of running all-MiniLM-L6-v2 is fastest here, and
what it costs in vector fidelity. The evidence behind kbchat's choice (torch fp32, token-length batches).

    python bench/embedder.py            # the real corpus's kbchat passages (679), 2 timed runs each
    python bench/embedder.py --quick    # 120 passages, 1 run

Variants, all on the same passages, each after one warm-up pass:
- sentence-transformers' own `encode` (batch 32; it orders texts by character length);
- kbchat's Embedder (torch, batches of similar token length, KBCHAT_EMBEDDING_BATCH_SIZE);
- the same batches through ONNX Runtime fp32 (kbchat's exported graph, as used for questions);
- ONNX Runtime int8, dynamic quantisation of the MatMul weights per output channel, and per tensor.
Fidelity: cosine of each vector to sentence-transformers' fp32 vector (min and mean).
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


def _timed(fn, runs: int) -> tuple[float, object]:
    out, secs = None, []
    fn()  # warm-up pass
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

    from kbchat.store import OnnxQueryEncoder, length_batches, load_embedder, token_lengths

    logging.getLogger().setLevel(logging.ERROR)  # the quantiser's pre-processing hint
    settings = C.kbchat_settings()
    texts = C.kbchat_passage_texts(C.corpus_pdfs(), settings)
    runs = 1 if args.quick else args.runs
    if args.quick:
        texts = texts[:: max(1, len(texts) // 120)][:120]
    emb = load_embedder(settings)
    model = emb.model
    print("# bench/embedder.py")
    print(C.machine_line())
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
    rows.append([f"kbchat Embedder: torch, token-length batches of {emb.batch_size}", s, v])

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
    for label, secs, vecs in rows:
        cos = (np.asarray(vecs, dtype=np.float32) * ref).sum(axis=1)
        table.append([label, f"{secs:.1f}", f"{len(texts) / secs:.1f}", f"{base_s / secs:.2f}×",
                      f"{cos.min():.4f} / {cos.mean():.4f}"])
    print(C.table(["variant", "seconds", "passages/s", "speed vs sentence-transformers",
                   "cosine to fp32, min / mean"], table))
    print("\nkbchat embeds passages with the fastest variant whose vectors stay those of the model "
          "(cosine 1.0000); questions go through the ONNX fp32 graph (one short text: ONNX is faster, "
          "see bench/search.py).")


if __name__ == "__main__":
    main()

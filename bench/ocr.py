"""OCR of generated scanned pages: speed (pages/s) and character accuracy per language, script
detection vs all configured languages at once, and `kbchat ingest` of a 40-page scanned PDF.

    python bench/ocr.py [--pages 40] [--skip-ingest]

Pages are made by tests/fixtures/scanned_pdfs.py (text rendered at 200 dpi into an image, no text layer).
Character accuracy = 1 - edit distance / reference length, whitespace removed on both sides.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WORK = Path(os.environ.get("KBCHAT_BENCH_DIR", "/tmp/kbchat-bench")) / "ocr"


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def accuracy(got: str, ref: str) -> float:
    got, ref = "".join(got.split()), "".join(ref.split())
    return max(0.0, 1 - edit_distance(got, ref) / len(ref))


def per_language() -> list[tuple]:
    from kbchat.documents.reader import read_document
    from kbchat.documents.ocr import OcrConfig
    from tests.fixtures.scanned_pdfs import SCRIPTS, scanned_language_pdf

    rows = []
    for lang in SCRIPTS:
        path = scanned_language_pdf(WORK / f"scan-{lang}.pdf", lang)
        ref = SCRIPTS[lang][1]
        modes = (("script detected", OcrConfig()), ("all five at once", OcrConfig(detect_script=False)))
        for mode, cfg in modes:
            t0 = time.perf_counter()
            doc = read_document(path, ocr=cfg, chunk_size=100_000, chunk_overlap=0)
            secs = time.perf_counter() - t0
            texts = {p.page: p.text for p in doc.passages}
            acc = sum(accuracy(texts.get(i + 1, ""), ref[i]) for i in range(2)) / 2
            rows.append((lang, mode, 2 / secs, acc))
            print(f"{lang:6} {mode:17} {2 / secs:5.2f} pages/s  accuracy {acc:.3f}", flush=True)
    return rows


def ingest_40(pages: int) -> float:
    from tests.fixtures.scanned_pdfs import scanned_language_pdf

    path = scanned_language_pdf(WORK / f"scan-{pages}.pdf", "en", copies=pages // 2)
    data = WORK / "data"
    subprocess.run(["rm", "-rf", str(data)], check=True)
    env = dict(os.environ, KBCHAT_DATA_DIR=str(data), PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "kbchat", "ingest", str(path)], env=env, capture_output=True,
                         text=True, check=True)
    secs = time.perf_counter() - t0
    print(out.stdout.strip())
    return secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=40)
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = per_language()
    print("\n| language | pages read with | pages/s | character accuracy |\n|---|---|---|---|")
    for lang, mode, speed, acc in rows:
        print(f"| {lang} | {mode} | {speed:.2f} | {acc:.3f} |")
    if not args.skip_ingest:
        secs = ingest_40(args.pages)
        print(f"\n`kbchat ingest` of a {args.pages}-page scanned English PDF (cold process, model load "
              f"included): {secs:.1f} s ({args.pages / secs:.2f} pages/s)")


if __name__ == "__main__":
    main()

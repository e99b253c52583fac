"""Model servers vs the local embedder: the app's start-up time and RSS, and ingest throughput.

    python bench/remote.py                  # one run of everything, results printed as Markdown
    python bench/remote.py --starts 1       # fewer app starts per side

The embedding server is tests/stubs/models.py in ANOTHER process, backed by the same bundled
all-MiniLM-L6-v2 on the same CPU (fp32, torch): the vectors are the ones the local embedder makes, so the
difference measured is what HTTP, JSON and a second process cost. A GPU server changes the embedding time
itself (not measured here: no GPU on this machine). Every side runs fp32 with torch questions so both do
the same arithmetic.

1. App start-up: `chainlit run app.py` (empty knowledge folder) until /health answers and the knowledge
   sync has run; RSS of the app process then (VmRSS) and its peak (VmHWM). Local and remote alternate; a
   first local start, not counted, fills the model cache.
2. Ingest: the real `kbchat ingest` CLI on the shared corpus, a new process and data dir per run (imports,
   model load or the server's dimension probe included), local then remote; passages/s and peak RSS.
3. Embedding only, warm: the corpus's passage texts embedded by a loaded local Embedder in this process and
   by the RemoteEmbedder (batches of 32, 1 and 2 requests in flight) against the warm server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODEL = "minilm-remote"


def _status(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(port: int, backend: str = "local", dim: int = 64) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.stubs.models", "--port", str(port),
                             "--backend", backend, "--model", MODEL, "--dim", str(dim)],
                            env=C.child_env(PYTHONPATH=C.REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if "serving" not in line:
        raise RuntimeError(f"model server did not start: {line}{proc.stdout.read()[-2000:]}")
    return proc


def app_start(root: Path, env_extra: dict) -> dict:
    """One `chainlit run app.py`: seconds to ready, RSS and peak RSS of the app process."""
    from tests.fixtures.appserver import AppServer

    t0 = time.perf_counter()
    srv = AppServer(root, "http://127.0.0.1:9/v1", extra_env=env_extra)
    try:
        srv.wait_ready(timeout=600)
        ready = time.perf_counter() - t0
        # one question's embedding, as the first chat would (the warm-up already did one)
        rss, hwm = _status(srv.proc.pid, "VmRSS"), _status(srv.proc.pid, "VmHWM")
        heavy = [m for m in ("torch", "sentence_transformers", "transformers") if
                 re.search(rf"\b{m}\b", open(f"/proc/{srv.proc.pid}/maps").read())]
    finally:
        srv.stop()
    return {"seconds": ready, "rss": rss, "hwm": hwm, "heavy": heavy}


def cli_ingest(data_dir: Path, env_extra: dict, pdfs: list[Path]) -> dict:
    env = C.child_env(PYTHONPATH=C.REPO, KBCHAT_DATA_DIR=data_dir, **env_extra)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kbchat", "ingest", *map(str, pdfs)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(out[-3000:])
    m = re.search(r"done: (\d+) pages, (\d+) new passages", out)
    return {"seconds": seconds, "pages": int(m.group(1)), "passages": int(m.group(2)),
            "peak": usage.ru_maxrss * 1024}


def overhead(port: int) -> str:
    """HTTP + JSON alone: the same texts against the stub's hashed vectors (no model), 384-d."""
    from kbchat.search.remote import RemoteEmbedder

    server = start_server(port, backend="hash", dim=384)
    try:
        texts = C.kbchat_passage_texts(C.corpus_pdfs(), C.kbchat_settings())
        rows = []
        for batch in (16, 32, 64):
            emb = RemoteEmbedder(f"http://127.0.0.1:{port}/v1", MODEL, batch_size=batch, concurrency=1)
            emb.encode_passages(texts[:64])
            t0 = time.perf_counter()
            for _ in range(3):
                emb.encode_passages(texts)
            t = (time.perf_counter() - t0) / 3
            rows.append([f"{batch} a request, 1 in flight", f"{t * 1000:.0f} ms", f"{t / len(texts) * 1000:.2f} ms",
                         f"{len(texts) / t:,.0f}"])
    finally:
        server.terminate()
        server.wait(10)
    return "\n".join([f"## HTTP + JSON alone ({len(texts)} passages, 384-d vectors from the stub's hashed bag of "
                      "words: no model)", "",
                      C.table(["requests", "time for all", "per passage", "passages/s ceiling"], rows), ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--starts", type=int, default=2, help="app starts per side")
    ap.add_argument("--port", type=int, default=8931)
    ap.add_argument("--only", choices=("overhead",), help="run only this part (printed, not written)")
    a = ap.parse_args()
    if a.only == "overhead":
        print(overhead(a.port + 1))
        return
    work = Path(tempfile.mkdtemp(prefix="kbchat-bench-remote-"))
    models = work / "models"
    common = {"KBCHAT_EMBEDDING_PRECISION": "fp32", "KBCHAT_QUERY_BACKEND": "torch",
              "KBCHAT_MODEL_CACHE_DIR": str(models)}
    server = start_server(a.port)
    remote = {"KBCHAT_EMBEDDING_BASE_URL": f"http://127.0.0.1:{a.port}/v1", "KBCHAT_EMBEDDING_MODEL": MODEL,
              **common}
    lines = [f"# bench/remote.py — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", C.machine_line(), ""]
    try:
        # ---- 1. app start-up
        print("app start-up ...", flush=True)
        app_start(work / "warm", common)  # fills the model cache; not counted
        runs: dict[str, list[dict]] = {"local": [], "remote": []}
        for i in range(a.starts):
            for side, env in (("local", common), ("remote", remote)):
                runs[side].append(app_start(work / f"app-{side}-{i}", env))
                print(side, runs[side][-1], flush=True)
        rows = []
        for side in ("local", "remote"):
            r = runs[side]
            rows.append([side, f"{C.median([x['seconds'] for x in r]):.1f} s",
                         " / ".join(f"{x['seconds']:.1f}" for x in r), C.mb(C.median([x["rss"] for x in r])),
                         C.mb(C.median([x["hwm"] for x in r])), ", ".join(r[0]["heavy"]) or "none"])
        lines += ["## App start-up (`chainlit run app.py`, empty knowledge folder, until ready)", "",
                  C.table(["embedder", "median start", "runs", "RSS when ready", "peak RSS",
                           "torch / transformers mapped"], rows), ""]

        # ---- 2. CLI ingest of the shared corpus
        pdfs = C.corpus_pdfs()
        print("CLI ingest ...", flush=True)
        rows = []
        for side, env in (("local", common), ("remote", remote)):
            r = cli_ingest(work / f"ingest-{side}", env, pdfs)
            rows.append([side, r["pages"], r["passages"], f"{r['seconds']:.1f} s",
                         f"{r['passages'] / r['seconds']:.1f}", C.mb(r["peak"])])
            print(side, r, flush=True)
        lines += [f"## `kbchat ingest` of the shared corpus ({len(pdfs)} PDFs), cold CLI process", "",
                  C.table(["embedder", "pages", "passages", "wall", "passages/s", "peak RSS (CLI)"], rows), ""]

        # ---- 3. embedding only, warm
        print("embedding only ...", flush=True)
        from kbchat.search.remote import RemoteEmbedder
        from kbchat.search.loaders import load_embedder

        s = C.kbchat_settings(embedding_precision="fp32", query_backend="torch", model_cache_dir=models)
        texts = C.kbchat_passage_texts(pdfs, s)
        local = load_embedder(s)
        local.encode_passages(texts[:64])
        rows = []
        t0 = time.perf_counter()
        ref = local.encode_passages(texts)
        t_local = time.perf_counter() - t0
        rows.append(["local Embedder (in process)", "-", f"{t_local:.1f} s", f"{len(texts) / t_local:.1f}", "-"])
        for conc in (1, 2):
            emb = RemoteEmbedder(f"http://127.0.0.1:{a.port}/v1", MODEL, batch_size=32, concurrency=conc)
            emb.encode_passages(texts[:64])
            t0 = time.perf_counter()
            got = emb.encode_passages(texts)
            t = time.perf_counter() - t0
            cos = float((ref * got).sum(1).min())
            rows.append(["RemoteEmbedder, server in another process", f"32 a request, {conc} in flight",
                         f"{t:.1f} s", f"{len(texts) / t:.1f}", f"{cos:.6f}"])
        lines += [f"## Embedding only, warm ({len(texts)} passage texts of the corpus)", "",
                  C.table(["embedder", "requests", "time", "passages/s", "min cosine to local"], rows), "",
                  "The server runs the same model on the same 2 CPU cores: the difference is the cost of HTTP, "
                  "JSON and a second process. A GPU embedding server changes the embedding time itself.", ""]
        lines.append(overhead(a.port + 1))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    out = C.REPO / "bench" / f"results-{time.strftime('%Y-%m-%d')}-remote.md"
    out.write_text(text + "\n", encoding="utf-8")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

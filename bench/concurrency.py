"""Concurrency benchmark: does a 300-page upload in one chat slow another chat's answers? Plus app start-up.

    python bench/concurrency.py                  # 300-page upload, 20 questions per phase
    python bench/concurrency.py --quick          # 40-page upload, 6 questions per phase

Starts the real app (`chainlit run app.py -h`) on a free port with its own app root (copies of .chainlit/
and public/), data dir and knowledge dir (4 real English PDFs), and the LLM pointed at a StubLLM
(tests/stubs/llm.py, an OpenAI-compatible server streaming a deterministic answer, --llm-delay s per token).
Reports start-up time (process start -> /health answers; the model is loaded in on_app_startup, before
/health answers), the knowledge sync time, and the idle RSS of the process tree with the model loaded.

Two chats talk to it over socket.io like the browser does (chainlit 2.12 protocol): chat B asks questions
one after another; the answer latency is client_message -> task_end (search + LLM stream + sources). Phases:
baseline, then while chat A uploads (POST /project/file) and sends a generated 300-page PDF (its message's
task_end = indexing done), then baseline again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """`chainlit run app.py` in a process group of its own."""

    def __init__(self, root: Path, llm_url: str, knowledge: list[Path], extra_env: dict):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for name in (".chainlit", "public"):
            shutil.copytree(C.REPO / name, root / name, dirs_exist_ok=True)
        for name in ("chainlit.md", "chainlit_zh-TW.md"):
            if (C.REPO / name).exists():
                shutil.copy(C.REPO / name, root / name)
        (root / "knowledge").mkdir(exist_ok=True)
        (root / "knowledge" / "clinic").mkdir(exist_ok=True)  # a base the shipped personas name
        for pdf in knowledge:
            shutil.copy(pdf, root / "knowledge" / pdf.name)
        env = C.child_env(
            CHAINLIT_APP_ROOT=root, KBCHAT_DATA_DIR=root / "data", KBCHAT_KNOWLEDGE_DIR=root / "knowledge",
            KBCHAT_PERSONAS_DIR=C.REPO / "personas", KBCHAT_LLM_BASE_URL=llm_url, KBCHAT_LLM_MODEL="stub",
            KBCHAT_LLM_TIMEOUT="30", **extra_env)
        for k in ("OPENAI_API_KEY", "NVIDIA_API_KEY", "DATABASE_URL", "LITERAL_API_KEY"):
            env.pop(k, None)
        self.log = open(root / "server.log", "w")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chainlit", "run", str(C.REPO / "app.py"), "-h", "--host", "127.0.0.1",
             "--port", str(self.port)],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_health(self, timeout: float) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited ({self.proc.returncode}): {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.t0
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"no /health in {timeout:.0f} s: {self.tail()}")

    def wait_knowledge(self, n: int, timeout: float) -> float:
        """Seconds until the catalog lists n active knowledge documents."""
        db = self.root / "data" / "catalog.sqlite"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if db.exists():
                try:
                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                    got = con.execute("SELECT COUNT(*) FROM documents WHERE origin='knowledge' AND active=1"
                                      ).fetchone()[0]
                    con.close()
                    if got >= n:
                        return time.perf_counter() - self.t0
                except sqlite3.Error:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited: {self.tail()}")
            time.sleep(0.25)
        raise RuntimeError(f"knowledge not indexed in {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")[-2500:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        self.log.close()


class Chat:
    """One browser-less chat session over socket.io (chainlit 2.12 internal protocol)."""

    def __init__(self, url: str, http):
        import socketio

        self.url = url
        self.http = http
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.ends: asyncio.Queue = asyncio.Queue()
        self.messages: list[dict] = []
        self.sio.on("*", self._on_event)

    async def _on_event(self, event, data=None):
        if event == "task_end":
            self.ends.put_nowait(time.perf_counter())
        elif event in ("new_message", "update_message") and isinstance(data, dict):
            self.messages.append(data)

    async def connect(self, timeout: float = 60) -> None:
        auth = {"sessionId": self.session_id, "clientType": "webapp", "chatProfile": None, "threadId": None,
                "userEnv": "{}"}
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", auth=auth, transports=["websocket"],
                               wait_timeout=timeout)
        await self.sio.emit("connection_successful")
        await asyncio.wait_for(self.ends.get(), timeout)  # on_chat_start done

    async def upload(self, path: Path) -> str:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("file", path.read_bytes(), filename=path.name, content_type="application/pdf")
        async with self.http.post(f"{self.url}/project/file", params={"session_id": self.session_id},
                                  data=form) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"upload failed: HTTP {r.status} {body}")
            return body["id"]

    async def send(self, text: str, file_ids=()) -> None:
        msg = {"id": str(uuid.uuid4()), "type": "user_message", "name": "User", "output": text,
               "createdAt": datetime.now(timezone.utc).isoformat()}
        await self.sio.emit("client_message", {"message": msg, "fileReferences": [{"id": f} for f in file_ids]})

    async def ask(self, text: str, timeout: float = 120) -> float:
        """Seconds from sending the question to the end of the app's handler."""
        while not self.ends.empty():
            self.ends.get_nowait()
        t0 = time.perf_counter()
        await self.send(text)
        t1 = await asyncio.wait_for(self.ends.get(), timeout)
        return t1 - t0

    async def close(self) -> None:
        await self.sio.disconnect()


async def drive(app: App, questions: list[str], upload_pdf: Path, n: int) -> dict:
    import aiohttp

    out: dict = {}
    async with aiohttp.ClientSession() as http:
        b = Chat(app.url, http)
        await b.connect()
        for q in questions[:2]:  # warm-up: first search, first LLM connection
            await b.ask(q)
        qi = iter(questions[i % len(questions)] for i in range(10**6))

        out["before"] = [await b.ask(next(qi)) for _ in range(n)]
        print(f"  baseline: {len(out['before'])} answers, p50 {C.pct(out['before'], 50) * 1000:.0f} ms", flush=True)

        a = Chat(app.url, http)
        await a.connect()
        t0 = time.perf_counter()
        fid = await a.upload(upload_pdf)
        out["upload_post_s"] = time.perf_counter() - t0
        while not a.ends.empty():
            a.ends.get_nowait()
        await a.send("", [fid])
        done = asyncio.ensure_future(a.ends.get())
        during = []
        while not done.done():
            lat = await b.ask(next(qi))
            if not done.done():
                during.append(lat)  # only answers that ran entirely inside the upload
        out["ingest_s"] = done.result() - t0
        out["during"] = during
        texts = [m.get("output", "") for m in a.messages if "Indexed" in str(m.get("output", ""))
                 or "not indexed" in str(m.get("output", ""))]
        out["upload_msg"] = texts[-1] if texts else "(no final indexing message seen)"
        print(f"  during upload: {len(during)} answers, upload+index {out['ingest_s']:.1f} s", flush=True)
        out["after"] = [await b.ask(next(qi)) for _ in range(n)]
        print(f"  after: {len(out['after'])} answers, p50 {C.pct(out['after'], 50) * 1000:.0f} ms", flush=True)
        # the answer text of the last question proves the chain worked end to end
        out["last_answer"] = next((m.get("output", "") for m in reversed(b.messages)
                                   if "According to" in str(m.get("output", ""))), "")
        await a.close()
        await b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=300, help="pages of the uploaded PDF (default 300)")
    ap.add_argument("--questions", type=int, default=20, help="questions per baseline phase")
    ap.add_argument("--llm-delay", type=float, default=0.01, help="stub LLM seconds per streamed token")
    ap.add_argument("--precision", default="fp32", help="KBCHAT_EMBEDDING_PRECISION of the app")
    ap.add_argument("--quick", action="store_true", help="40-page upload, 6 questions per phase")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the upload to be indexed")
    args = ap.parse_args()
    if args.quick:
        args.pages, args.questions = 40, 6

    print("# bench/concurrency.py")
    print(C.machine_line(), flush=True)
    C.WORK.mkdir(parents=True, exist_ok=True)
    upload = C.WORK / f"upload-{args.pages}p.pdf"
    if not upload.exists():
        import random

        texts = C.real_page_texts()
        rng = random.Random(1)
        C.write_pdf(upload, [rng.choice(texts) for _ in range(args.pages)])
    knowledge = [p for p in C.corpus_pdfs() if p.name.startswith("en-nvidia")][:4]
    kdocs = {p.name for p in knowledge}
    questions = [q["question"] for q in C.load_questions() if q["doc"] in kdocs and q["lang"] == "en"]
    questions = questions or [q["question"] for q in C.load_questions() if q["lang"] == "en"]

    from tests.stubs.llm import StubLLM

    stub = StubLLM(delay=args.llm_delay).start()
    tmp = Path(tempfile.mkdtemp(prefix="app-", dir=C.WORK))
    app = None
    rows, trows = [], []
    try:
        app = App(tmp, stub.base_url, knowledge, {"KBCHAT_EMBEDDING_PRECISION": args.precision})
        try:
            start_s = app.wait_health(300)
            at_health = C.tree_rss(app.proc.pid)
            sync_s = app.wait_knowledge(len(knowledge), 600)
        except RuntimeError as err:
            print(f"\nAPP NOT WORKING: {err}")
            return
        time.sleep(3)
        idle = C.tree_rss(app.proc.pid)
        print(f"  start-up {start_s:.1f} s, knowledge ({len(knowledge)} PDFs) indexed at {sync_s:.1f} s, "
              f"idle RSS {C.mb(idle)}", flush=True)
        try:
            res = asyncio.run(drive(app, questions, upload, args.questions))
        except Exception as err:  # report, never a traceback as the table
            print(f"\nSOCKET.IO DRIVE FAILED: {type(err).__name__}: {err}\n--- server log tail ---\n{app.tail()}")
            return
        peak_after = C.tree_rss(app.proc.pid)
    finally:
        if app is not None:
            app.stop()
        stub.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n## App start-up and memory")
    print(C.table(["measure", "value"], [
        ["start-up: `chainlit run app.py` -> /health (model loaded in on_app_startup)", f"{start_s:.1f} s"],
        [f"knowledge sync of {len(knowledge)} PDFs done (from process start)", f"{sync_s:.1f} s"],
        ["RSS of the process tree when /health first answers", C.mb(at_health)],
        ["idle RSS, process tree, model loaded, knowledge indexed", C.mb(idle)],
        ["RSS after the benchmark (300-page PDF indexed in a chat)", C.mb(peak_after)],
    ]))

    def ms(xs, q):
        return f"{C.pct(xs, q) * 1000:.0f}" if xs else "-"

    print(f"\n## Chat B answer latency (ms; search + stub LLM at {args.llm_delay * 1000:.0f} ms/token + sources)")
    base = res["before"] + res["after"]
    for name, xs in (("before the upload", res["before"]), ("during the upload", res["during"]),
                     ("after the upload", res["after"]), ("baseline = before + after", base)):
        rows.append([name, len(xs), ms(xs, 50), ms(xs, 95), ms(xs, 100)])
    print(C.table(["phase", "answers", "p50", "p95", "max"], rows))
    print(f"\nchat A: {args.pages}-page PDF, POST {res['upload_post_s']:.1f} s, upload + indexing done after "
          f"{res['ingest_s']:.1f} s; app said: {res['upload_msg']!r}")
    print(f"last stub answer seen by chat B: {res['last_answer'][:120]!r}")

    print("\n## Targets (issue 5)")
    trows.append(["app idle with the model loaded ≤ 1.2 GB RSS", C.mb(idle), C.verdict(idle <= 1.2 * 2**30)])
    if res["during"] and base:
        growth = C.pct(res["during"], 95) / C.pct(base, 95) - 1
        trows.append(["other chat's p95 answer latency grows ≤ 25% during a 300-page upload"
                      if args.pages == 300 else f"p95 growth ≤ 25% during a {args.pages}-page upload",
                      f"{growth * 100:+.0f}% ({ms(base, 95)} -> {ms(res['during'], 95)} ms)",
                      C.verdict(growth <= 0.25)])
    else:
        trows.append(["p95 growth ≤ 25% during the upload", "no answer completed during the upload", "n/a"])
    print(C.table(["target", "measured", "verdict"], trows))


if __name__ == "__main__":
    main()

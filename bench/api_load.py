"""API load (issue 24): N concurrent streamed chats through the OpenAI-compatible API against the LLM stub.

    python bench/api_load.py                  # 20 concurrent chats, 3 rounds, stub 0.01 s per token
    python bench/api_load.py --quick          # 20 concurrent chats, 1 round

Starts the real app (`chainlit run app.py`, tests/fixtures/appserver.py) with one user, a 4-page handbook in
its knowledge folder and the LLM pointed at a StubLLM (tests/stubs/llm.py, --llm-delay s per token), makes
one API key per concurrent client (`records/keys.py`, as `kbchat keys create` does), then runs --rounds
rounds of --clients concurrent streamed `POST /v1/chat/completions` with the official `openai` async client.
Time to first token: request sent -> the first chunk carrying answer text (search + prompt + the stub's
first token); total: -> `[DONE]`. Errors: any exception, a chunk stream without citations, or a non-stop
finish. Prints p50 / p95 / max of both, errors, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402,F401  (offline environment, repo on sys.path)

from tests.conftest import make_pdf  # noqa: E402
from tests.fixtures.appserver import add_users, running_app  # noqa: E402
from tests.stubs.llm import StubLLM  # noqa: E402

PAGES = ["Office handbook. Salaries are paid on the 25th of each month.",
         "Office handbook. Salary slips are available in the staff portal.",
         "Office handbook. Questions about salary go to the payroll desk in room 12.",
         "Office handbook. The office opens at 8 am and the salary office at 9 am."]
QUESTIONS = ["When are salaries paid?", "Where do salary questions go?", "When does the office open?",
             "Where are salary slips?"]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def one_chat(client, question: str) -> tuple[float | None, float, str | None]:
    t0 = time.perf_counter()
    first = None
    try:
        stream = await client.chat.completions.create(
            model="general", stream=True, messages=[{"role": "user", "content": question}])
        last = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            last = chunk
        if last is None or last.choices[0].finish_reason != "stop" or not (last.model_extra or {}).get("citations"):
            return first, time.perf_counter() - t0, "no citations or no stop"
    except Exception as err:
        return first, time.perf_counter() - t0, f"{type(err).__name__}: {err}"
    return first, time.perf_counter() - t0, None


async def run_rounds(url: str, keys: list[str], rounds: int) -> tuple[list[float], list[float], list[str]]:
    import openai

    clients = [openai.AsyncOpenAI(base_url=url + "/v1", api_key=k, max_retries=0, timeout=120) for k in keys]
    ttft, total, errors = [], [], []
    for r in range(rounds):
        results = await asyncio.gather(*(one_chat(c, QUESTIONS[(i + r) % len(QUESTIONS)])
                                         for i, c in enumerate(clients)))
        for first, whole, err in results:
            if err:
                errors.append(err)
            else:
                ttft.append(first)
                total.append(whole)
    for c in clients:
        await c.close()
    return ttft, total, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llm-delay", type=float, default=0.01, help="stub seconds per streamed token")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rounds = 1 if a.quick else a.rounds
    print(f"load average at start: {os.getloadavg()}")
    stub = StubLLM(delay=a.llm_delay)
    stub.start()
    root = Path(tempfile.mkdtemp(prefix="kbchat-api-load-", dir=C.WORK if C.WORK.exists() else None))
    add_users(root / "data", users=("alice",))
    pdf = make_pdf(root / "office-handbook.pdf", PAGES)
    env = {"KBCHAT_API_RATE_PER_MINUTE": "100000"}
    t0 = time.perf_counter()
    with running_app(root, stub.base_url, knowledge=[pdf], extra_env=env) as app:
        print(f"app ready in {time.perf_counter() - t0:.1f} s")
        from kbchat.records.database import Database, default_url
        from kbchat.records.keys import ApiKeys

        db = Database(default_url(root / "data"))
        keys = [ApiKeys(db).create("alice", label=f"bench-{i}")[0] for i in range(a.clients)]
        db.close()
        asyncio.run(run_rounds(app.url, keys[:2], 1))  # warm-up (first search, first LLM client)
        t1 = time.perf_counter()
        ttft, total, errors = asyncio.run(run_rounds(app.url, keys, rounds))
        wall = time.perf_counter() - t1
    stub.stop()
    n = a.clients * rounds
    print(f"{a.clients} concurrent streamed chats x {rounds} round(s) = {n} chats in {wall:.1f} s "
          f"(stub {a.llm_delay} s/token)")
    if ttft:
        print(f"time to first token: p50 {statistics.median(ttft) * 1000:.0f} ms, p95 {pct(ttft, .95) * 1000:.0f} ms, "
              f"max {max(ttft) * 1000:.0f} ms")
        print(f"total per chat:      p50 {statistics.median(total) * 1000:.0f} ms, p95 {pct(total, .95) * 1000:.0f} ms, "
              f"max {max(total) * 1000:.0f} ms")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

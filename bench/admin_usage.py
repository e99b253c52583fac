"""Admin console, Usage page: how long it takes with N recorded questions (issue 23: 1,000 in under 1 s).

    python bench/admin_usage.py                 # 1,000 answers, 20 page loads
    python bench/admin_usage.py --answers 5000

Seeds a fresh data dir with N answer records as the chat writes them (kbchat.records.history.History
.save_answer, the usage fields of kbchat/ui/asking.usage_fields) spread over 30 days, four personas, two
bases, 25% with no passage found, 8% search-only, thumbs on 30% (a third down), unanswered questions in 40
topics with reworded variants (English and Traditional Chinese). Then (1) the report alone in this process
(kbchat.records.usage.usage_report: the query, the grouping of similar questions), and (2) the real app
(`chainlit run app.py`), signed in as an admin: GET /admin/usage (the whole page: gate, report, charts,
template) and one CSV, wall time per request from this client. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TOPICS = ["reset my password", "book a meeting room", "parking for visitors", "night shift hours",
          "report a needle injury", "order new gloves", "visiting hours on the ward", "the fire exit plan",
          "claim travel expenses", "request annual leave"]
ZH = ["病人跌倒怎麼辦", "夜班幾點開始", "訪客停車在哪裡", "如何申請休假", "針扎後要通報誰"]
FRAMES = ["How do I {t}?", "how to {t}", "{t} - where do I find it?", "Question about {t}", "what about {t}"]


def seed(data_dir: Path, n: int) -> None:
    from sqlalchemy import insert

    from kbchat.records.accounts import Accounts
    from kbchat.records.database import feedbacks, open_database
    from kbchat.records.history import History
    from kbchat.settings import Settings

    rnd = random.Random(23)
    db = open_database(Settings(data_dir=data_dir))
    Accounts(db).add("admin", "admin-password-1", role="admin")
    history = History(db)
    now = datetime.now(timezone.utc)
    thumbs = []
    for i in range(n):
        uncovered = rnd.random() < 0.25
        if uncovered:
            topic = rnd.choice(ZH) + rnd.choice(["？", "了嗎", "呢"]) if rnd.random() < 0.3 else \
                rnd.choice(FRAMES).format(t=rnd.choice(TOPICS + [f"topic {k}" for k in range(30)]))
        else:
            topic = f"What does document {rnd.randrange(200)} say about item {rnd.randrange(50)}?"
        files = [f"doc-{rnd.randrange(20)}.pdf" for _ in range(2)]
        asked = now - timedelta(days=rnd.randrange(30), seconds=rnd.randrange(86400))
        record = {"question": topic, "answer": "…", "reasoning": "", "persona_id": rnd.choice(
                      ["general", "clinic", "hr", "it"]),
                  "sources": [] if uncovered else [{"n": k + 1, "file": f, "page": 1, "page_label": None,
                                                    "text": "x", "collection": rnd.choice(["shared", "kb-clinic"])}
                                                   for k, f in enumerate(files)],
                  "model": "stub", "settings": {}, "user": f"user{rnd.randrange(40)}", "lang": "en", "via": "chat",
                  "bases": ["shared", "kb-clinic"], "asked_at": asked.isoformat(),
                  "first_token_ms": rnd.randrange(200, 1500), "total_ms": rnd.randrange(800, 9000),
                  "search_only": rnd.random() < 0.08, "not_covered": uncovered}
        aid = str(uuid.uuid4())
        history.save_answer(aid, "thread-bench", record)
        if rnd.random() < 0.3:
            thumbs.append({"id": str(uuid.uuid4()), "for_id": aid, "thread_id": "thread-bench",
                           "value": 0 if rnd.random() < 0.33 else 1, "comment": None})
    with db.begin() as c:
        if thumbs:
            c.execute(insert(feedbacks), thumbs)


def in_process(data_dir: Path, runs: int) -> list[float]:
    from kbchat.records.database import open_database
    from kbchat.records.usage import usage_report
    from kbchat.settings import Settings

    db = open_database(Settings(data_dir=data_dir))
    today = datetime.now(timezone.utc).date()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rep = usage_report(db, today - timedelta(days=29), today)
        out.append(time.perf_counter() - t0)
    print(f"report: {rep.questions} questions, {len(rep.unanswered)} unanswered groups "
          f"(largest {rep.unanswered[0].count if rep.unanswered else 0}), {len(rep.cited)} cited documents")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--answers", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    import httpx
    from concurrency import App

    print(C.machine_line())
    root = Path(tempfile.mkdtemp(prefix="kbchat-bench-usage-"))
    t0 = time.perf_counter()
    seed(root / "data", args.answers)
    print(f"seeded {args.answers} answers in {time.perf_counter() - t0:.1f} s")
    rows = []
    local = in_process(root / "data", args.runs)
    rows.append(["usage_report() in process (query + grouping)", f"{C.median(local) * 1000:.0f}",
                 f"{C.pct(local, 95) * 1000:.0f}", f"{max(local) * 1000:.0f}"])
    app = App(root, "http://127.0.0.1:9/v1", [], {})
    try:
        app.wait_health(300)
        with httpx.Client(base_url=app.url, timeout=60) as c:
            assert c.post("/login", data={"username": "admin", "password": "admin-password-1"}).status_code == 200
            for path, label in (("/admin/usage?days=30", "GET /admin/usage (whole page) over HTTP"),
                                ("/admin/usage/csv/unanswered?days=30", "GET /admin/usage/csv/unanswered")):
                first = time.perf_counter()
                r = c.get(path)
                cold = time.perf_counter() - first
                assert r.status_code == 200, r.text[:300]
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    c.get(path)
                    times.append(time.perf_counter() - t)
                rows.append([f"{label} (first: {cold * 1000:.0f} ms)", f"{C.median(times) * 1000:.0f}",
                             f"{C.pct(times, 95) * 1000:.0f}", f"{max(times) * 1000:.0f}"])
    finally:
        app.stop()
    print()
    print(f"{args.answers} recorded questions, {args.runs} runs each")
    print(C.table(["what", "median ms", "p95 ms", "max ms"], rows))
    page = [float(r[1]) for r in rows if r[0].startswith("GET /admin/usage (")][0]
    print(f"\nissue 23 target: the Usage page with 1,000 questions under 1 s: median {page:.0f} ms "
          f"{C.verdict(page < 1000) if args.answers == 1000 else ''}")


if __name__ == "__main__":
    main()

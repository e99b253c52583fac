"""Personas in the database: what one look at the chat's personas costs (issue 23: changes apply to new chats
without a restart, so every look asks the database whether a persona changed).

    python bench/personas_cache.py                 # the shipped personas + 200 more, SQLite
    python bench/personas_cache.py --personas 1000

Seeds a fresh SQLite database from personas/ plus N published personas made from the general one, then
times (1) a look with nothing changed (kbchat.records.personas.PersonaCache.current: one max(id) query and
the knowledge folder's listing), (2) the rebuild after a change (the catalog validated again), (3) one save
through the validator (a version and an audit line in one transaction). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _ms(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--personas", type=int, default=200)
    args = ap.parse_args()
    from kbchat.knowledge import base_names
    from kbchat.personas import validate_persona
    from kbchat.records.database import Database, default_url
    from kbchat.records.personas import PersonaCache, PersonaRecords
    from kbchat.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", knowledge_dir=REPO / "knowledge")
        db = Database(default_url(settings.data_dir))
        records = PersonaRecords(db)
        records.seed(REPO / "personas")
        general = records.get("general").data
        base = {k: v for k, v in general.items() if k != "default"}
        records.import_personas([validate_persona({**base, "id": f"p-{i}", "name": {"en": f"Persona {i}"}}, "bench")
                                 for i in range(args.personas)], by="bench")
        cache = PersonaCache(records, lambda: base_names(settings))
        cache.current()
        look = _ms(cache.current, 500)
        rebuild = _ms(lambda: records.catalog(base_names(settings)), 20)
        n = iter(range(10_000))
        save = _ms(lambda: records.save({**base, "id": "p-0", "temperature": round(0.1 + next(n) % 9 / 10, 1)},
                                        by="bench"), 50)
        db.close()
    total = 4 + args.personas
    print(f"{total} personas, SQLite")
    print(f"look, nothing changed: median {look[0]:.2f} ms, p95 {look[1]:.2f} ms")
    print(f"rebuild after a change: median {rebuild[0]:.1f} ms, p95 {rebuild[1]:.1f} ms")
    print(f"save (validate, record, version, audit): median {save[0]:.1f} ms, p95 {save[1]:.1f} ms")


if __name__ == "__main__":
    main()

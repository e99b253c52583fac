"""Upload jobs of the console: several files added to a knowledge base in a worker thread by the one
ingest routine (kbchat.knowledge.add_to_base -> kbchat.uploads.add_files), with each file's progress
(pages read, OCR pages, passages embedded) and outcome kept in this process's registry, so the page that
polls it shows the same bars after a reload. Jobs are kept JOB_KEEP_SECONDS after they end; with several
replicas the proxy keeps a browser on one replica, which holds its jobs."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kbchat.ui import runtime
from kbchat.uploads import Event, FileToAdd, Outcome, Progress

JOB_KEEP_SECONDS = 6 * 3600


@dataclass
class FileState:
    """One file of a job as the page shows it."""

    name: str
    stage: str = "waiting"               # waiting | reading | reading_ocr | embedding | done | failed
    pages_done: int = 0
    pages_total: int = 0
    ocr_pages: int = 0
    embedded: int = 0
    passages: int = 0
    outcome: Outcome | None = None
    refused: tuple[str, dict] | None = None   # refused before reading: (line key, params)


@dataclass
class Job:
    id: str
    base: str
    by: str
    started: float
    files: list[FileState]
    ended: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self.ended is None


JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()


def _forget_old() -> None:
    now = time.time()
    with _JOBS_LOCK:
        for jid in [j.id for j in JOBS.values() if j.ended and now - j.ended > JOB_KEEP_SECONDS]:
            JOBS.pop(jid, None)


def jobs_of(base: str) -> list[Job]:
    """The jobs of one base, newest first."""
    _forget_old()
    with _JOBS_LOCK:
        return sorted((j for j in JOBS.values() if j.base == base), key=lambda j: -j.started)


def get(job_id: str) -> Job | None:
    with _JOBS_LOCK:
        return JOBS.get(job_id)


def _on_event(job: Job, event: Event) -> None:
    with job.lock:
        waiting = [f for f in job.files if f.outcome is None and f.refused is None and f.name == event.name]
        if not waiting:
            return
        f = waiting[0]
        if isinstance(event, Progress):
            if event.stage == "reading":
                f.stage, f.pages_done, f.pages_total = "reading", event.done, event.total
            elif event.stage == "reading_ocr":
                f.stage, f.ocr_pages = "reading_ocr", f.ocr_pages + 1
                f.pages_total = f.pages_total or event.total
            else:
                f.stage, f.embedded, f.passages = "embedding", event.done, event.total
        else:
            f.outcome = event
            f.stage = "done" if event.error is None else "failed"
            if event.doc is not None:
                f.pages_done = f.pages_total = event.doc.pages
                f.passages = f.embedded = len(event.doc.passages)


def start(base: str, by: str, address: str | None, saved: list[tuple[str, Path]],
          refused: list[tuple[str, str, dict]], folder: Path) -> Job:
    """Start adding ``saved`` (name, temporary path) to ``base``; ``refused`` (name, line key, params) are
    files refused before reading (too large). ``folder`` (the temporary copies) is deleted at the end."""
    files = [FileState(name) for name, _ in saved] + [FileState(n, stage="failed", refused=(k, p))
                                                       for n, k, p in refused]
    job = Job(uuid.uuid4().hex, base, by, time.time(), files)
    with _JOBS_LOCK:
        JOBS[job.id] = job

    def work() -> None:
        from kbchat.knowledge import add_to_base

        c = runtime.core()
        outcomes: list[Outcome] = []
        try:
            if saved:
                outcomes = add_to_base(c.store, c.settings, base, [FileToAdd(p, n) for n, p in saved], added_by=by,
                                       lock=c.write_lock, progress=lambda e: _on_event(job, e))
        except Exception:  # an unexpected error: logged, the job's files end as failed
            runtime.log.exception("console upload to %s failed", base)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with job.lock:
                for f in job.files:
                    if f.stage not in ("done", "failed"):
                        f.stage = "failed"
                job.ended = time.time()
        added = [o for o in outcomes if o.error is None]
        detail = {"documents": [o.name for o in added][:50], "count": len(added),
                  "failed": [f.name for f in job.files if f.stage == "failed"][:50], "via": "console"}
        try:
            c.access.record("kb.add", by, base, detail, address=address)
        except Exception:
            runtime.log.exception("audit of a console upload to %s failed", base)

    threading.Thread(target=work, name=f"kbchat-admin-upload-{job.id[:8]}", daemon=True).start()
    return job

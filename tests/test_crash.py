"""Crash safety (issue 6 §5): kill -9 `kbchat ingest` half-way; a new process sees no half document,
and re-running the ingest completes it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from tests.conftest import REPO
from tests.fixtures import hostile_pdfs as H

PHRASE = "ptarmigan"


def _count(db, sql, args=()) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute(sql, args).fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _env(data):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBCHAT_")}
    env.update(KBCHAT_DATA_DIR=str(data), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               ANONYMIZED_TELEMETRY="False")
    return env


def test_kill_9_mid_ingest_leaves_no_half_document(tmp_path):
    from kbchat.documents.pdf import read_pdf
    from kbchat.search.retrieve import search
    from kbchat.search.base import POOL_BELOW
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.loaders import load_embedder
    from kbchat.settings import Settings

    data = tmp_path / "data"
    # a small document first: it must survive the crash intact
    small = H.text_pdf(tmp_path / "survivor.pdf", ["The survivor manual says the lantern burns for 9 hours."])
    big = H.big_text_pdf(tmp_path / "ledger.pdf", 300, PHRASE)
    expected = len(read_pdf(big).passages)
    # Files this large are embedded and written in steps (smaller ones are pooled and embedded before
    # their first write), so the kill can land between the writes of one document.
    assert expected >= POOL_BELOW, expected
    cmd = [sys.executable, "-m", "kbchat", "ingest", "--data-dir", str(data)]
    first = subprocess.run(cmd + [str(small)], cwd=REPO, env=_env(data), capture_output=True, text=True,
                           timeout=180)
    assert first.returncode == 0, first.stderr

    catalog, chroma_db = data / "catalog.sqlite", data / "chroma" / "chroma.sqlite3"
    # the survivor's vectors: one per dense index (MiniLM, and the multilingual one where it is on)
    before = _count(chroma_db, "SELECT count(*) FROM embeddings")
    assert before >= 1, before
    proc = subprocess.Popen(cmd + [str(big)], cwd=REPO, env=_env(data), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 150
    vectors = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            vectors = _count(chroma_db, "SELECT count(*) FROM embeddings")
            if vectors > before:  # the survivor's vectors plus the first batch of the ledger
                break
            time.sleep(0.2)
        assert proc.poll() is None, "ingest finished before it could be killed: " + proc.stdout.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"killed with {vectors} vectors in chroma ({expected} expected for the ledger)")
    assert vectors > before, "killed before any ledger passage was embedded"
    pending = _count(catalog, "SELECT count(*) FROM documents WHERE source LIKE 'ledger%' AND active=0")
    active = _count(catalog, "SELECT count(*) FROM documents WHERE source LIKE 'ledger%' AND active=1")
    assert pending == 1 and active == 0, (pending, active)

    # a new process (here: this one) opens the store: no half document is visible
    settings = Settings(data_dir=data)
    store = EmbeddedStore(data, load_embedder(settings))
    try:
        coll = store.collection(settings.shared_collection)
        assert [d.source for d in coll.documents()] == ["survivor.pdf"]
        hits = search([coll], store.embedder, f"{PHRASE} ledger entry depot", k=5, candidate_k=30)
        assert all(h.source == "survivor.pdf" for h in hits), [h.source for h in hits]
        assert coll._chroma.count() == 1  # the orphaned half's vectors were cleaned up
        assert search([coll], store.embedder, "How long does the lantern burn?", k=1)[0].source == "survivor.pdf"
    finally:
        store.close()

    # re-running the ingest completes it. In this process (click's runner): chromadb caches its client
    # per path inside a process, so a store reopened here after another process wrote would be stale.
    from click.testing import CliRunner

    from kbchat.cli import main

    again = CliRunner().invoke(main, ["ingest", "--data-dir", str(data), str(big)])
    assert again.exit_code == 0, again.output
    assert f"ledger.pdf: 300 pages, {expected} passages, added" in again.stdout, again.stdout
    store = EmbeddedStore(data, load_embedder(settings))
    try:
        coll = store.collection(settings.shared_collection)
        assert sorted(d.source for d in coll.documents()) == ["ledger.pdf", "survivor.pdf"]
        assert len(coll) == expected + 1 and coll._chroma.count() == expected + 1
        hits = search([coll], store.embedder, f"{PHRASE} ledger entry 4711", k=5, candidate_k=30)
        assert hits and hits[0].source == "ledger.pdf"
    finally:
        store.close()

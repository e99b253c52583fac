"""One upload routine (kbchat.uploads.add_files) for a chat's uploads, knowledge-base additions and
`kbchat ingest`: each file hashed once, the same progress events and outcomes whichever way a file comes
in, the same errors, and one wording of them in the chat (kbchat.ui.uploads)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import kbchat.documents.passages as passages_module
import kbchat.documents.pdf as pdf_module
import kbchat.documents.reader as reader_module
from kbchat.knowledge import add_to_base, create_base, stored_dir
from kbchat.records.database import open_database
from kbchat.records.history import History, uploads_root
from kbchat.search.store import EmbeddedStore
from kbchat.uploads import MAX_PAGES, FileToAdd, Outcome, Progress, add_files
from tests.conftest import make_pdf


@pytest.fixture
def store(settings, embedder):
    s = EmbeddedStore(settings.data_dir, embedder)
    yield s
    s.close()


class _CountingHashlib:
    """hashlib as kbchat.documents sees it, counting the sha256 objects made (one per hashing)."""

    def __init__(self):
        self.calls = 0

    def sha256(self, *args):
        self.calls += 1
        return hashlib.sha256(*args)

    def __getattr__(self, name):
        return getattr(hashlib, name)


@pytest.fixture
def hashes(monkeypatch):
    counter = _CountingHashlib()
    monkeypatch.setattr(passages_module, "hashlib", counter)  # file_hash
    monkeypatch.setattr(pdf_module, "hashlib", counter)     # read_pdf
    monkeypatch.setattr(reader_module, "hashlib", counter)  # Markdown, text and Office files
    return counter


def _chat_upload(store, settings, path: Path, name: str, events: list, thread_id="t1") -> Outcome:
    """The chat's own call (kbchat.ui.handlers._add_upload) on a minimal core, with a real history."""
    from kbchat.records.history import thread_collection
    from kbchat.ui.handlers import _add_upload
    from kbchat.ui.runtime import ChatState

    core = SimpleNamespace(store=store, settings=settings, write_lock=threading.Lock(),
                           history=History(open_database(settings)))
    state = ChatState(persona_id="general", thread_id=thread_id, collection=thread_collection(thread_id),
                      user="ann")
    return _add_upload(core, state, str(path), name, events.append)


def _base_add(store, settings, path: Path, name: str, events: list) -> Outcome:
    [out] = add_to_base(store, settings, "clinic", [FileToAdd(path, name)], added_by="boss",
                        lock=threading.Lock(), progress=events.append)
    return out


def _shape(events: list) -> list[tuple]:
    """Events without what differs by design (times, the catalog row)."""
    return [(type(e).__name__, e.name, e.stage, e.done, e.total) if isinstance(e, Progress)
            else (type(e).__name__, e.name, e.status, e.reason, e.other) for e in events]


def test_each_file_is_hashed_once_whichever_way_it_comes_in(settings, store, tmp_path, hashes):
    create_base(settings, "clinic", "Patient leaflets.")
    pdf = make_pdf(tmp_path / "in" / "fever.pdf", ["Fever in children: give fluids.", "Call 119 if drowsy."])
    md = tmp_path / "in" / "notes.md"
    md.write_text("# Notes\n\nThe clinic opens at 8 am.\n", encoding="utf-8")

    for path in (pdf, md):
        hashes.calls = 0
        out = _chat_upload(store, settings, path, path.name, [])
        assert out.status == "added" and hashes.calls == 1, (path.name, hashes.calls)
        assert out.doc.doc_hash == hashlib.sha256(path.read_bytes()).hexdigest()
        hashes.calls = 0
        assert _base_add(store, settings, path, path.name, []).status == "added" and hashes.calls == 1
    hashes.calls = 0
    outs = add_files(store, "cli-coll", [FileToAdd(pdf, pdf.name, key=str(pdf)), FileToAdd(md, md.name, key=str(md))],
                     settings=settings, origin="cli", pooled=True)
    assert [o.status for o in outs] == ["added", "added"] and hashes.calls == 2


def test_chat_and_knowledge_base_get_the_same_events_and_outcomes(settings, store, tmp_path):
    create_base(settings, "clinic", "Patient leaflets.")
    pdf = make_pdf(tmp_path / "in" / "fever.pdf", ["Fever in children: give fluids.", "Call 119 if drowsy."])
    newer = make_pdf(tmp_path / "in2" / "fever.pdf", ["Fever in children: give fluids and rest."])
    copy = tmp_path / "in" / "fever-copy.pdf"
    copy.write_bytes(newer.read_bytes())
    steps = [(pdf, "fever.pdf"), (pdf, "fever.pdf"), (newer, "fever.pdf"), (copy, "fever-copy.pdf")]
    chat, base = [], []
    chat_out = [_chat_upload(store, settings, p, n, chat) for p, n in steps]
    base_out = [_base_add(store, settings, p, n, base) for p, n in steps]

    assert [o.status for o in chat_out] == [o.status for o in base_out] == [
        "added", "unchanged", "replaced", "duplicate"]
    assert chat_out[3].other == base_out[3].other == "fever.pdf"
    assert _shape(chat) == _shape(base)
    first = _shape(chat)[: _shape(chat).index(("Outcome", "fever.pdf", "added", "", ""))]
    assert first[:2] == [("Progress", "fever.pdf", "reading", 1, 2), ("Progress", "fever.pdf", "reading", 2, 2)]
    assert first[-1][2] == "embedding" and first[-1][3] == first[-1][4] == len(chat_out[0].doc.passages)
    # the outcome comes last, after its progress events
    assert isinstance(chat[-1], Outcome) and chat[-1] is chat_out[-1]

    # who added it and where the copy is kept is what differs
    thread_docs = {d.source: d for d in store.collection("thread-t1").documents()}
    base_docs = {d.source: d for d in store.collection("kb-clinic").documents()}
    assert thread_docs["fever.pdf"].origin == "upload" and base_docs["fever.pdf"].origin == "admin"
    assert base_docs["fever.pdf"].added_by == "boss"
    assert Path(thread_docs["fever.pdf"].path).parent == uploads_root(settings.data_dir) / "t1"
    assert Path(base_docs["fever.pdf"].path).parent == stored_dir(settings, "clinic")
    # a base drops the replaced version's copy; a chat keeps it (its earlier answers cite it)
    old = chat_out[0].doc.doc_hash
    assert (uploads_root(settings.data_dir) / "t1" / f"{old}.pdf").is_file()
    assert not (stored_dir(settings, "clinic") / f"{old}.pdf").exists()
    # the chat records each upload as the thread owner's
    rows = History(open_database(settings)).uploads("t1")
    assert {r["name"] for r in rows} == {"fever.pdf", "fever-copy.pdf"} and {r["owner"] for r in rows} == {"ann"}


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "broken.pdf").write_bytes(b"hello, not a pdf")
    (d / "notes.zip").write_bytes(b"PK\x03\x04 not really")
    (d / "blank.md").write_text("  \n\n  ", encoding="utf-8")
    big = make_pdf(d / "huge.pdf", [""] * (MAX_PAGES + 1))
    return {
        "broken.pdf": (d / "broken.pdf", "not a PDF"),
        "notes.zip": (d / "notes.zip", ("unsupported file type '.zip' (supported: .pdf .docx .pptx .xlsx .odt "
                                        ".md .markdown .txt)")),
        "blank.md": (d / "blank.md", "no text (only whitespace)"),
        "huge.pdf": (big, f"too many pages ({MAX_PAGES + 1}, limit {MAX_PAGES})"),
    }


def test_broken_unsupported_empty_and_too_long_files_fail_alike_everywhere(settings, store, tmp_path,
                                                                             monkeypatch):
    create_base(settings, "clinic", "Patient leaflets.")
    bad = _bad_files(tmp_path)
    for name, (path, reason) in bad.items():
        chat, base = [], []
        c = _chat_upload(store, settings, path, name, chat)
        b = _base_add(store, settings, path, name, base)
        for out in (c, b):
            assert out.status == "failed" and out.reason == reason and str(out.error) == f"{name}: {reason}"
            assert out.doc is None and out.result is None
        assert _shape(chat)[-1] == _shape(base)[-1]
    # nothing kept of a file that failed
    assert not list(stored_dir(settings, "clinic").glob("*"))
    assert not list((uploads_root(settings.data_dir) / "t1").glob("*"))
    assert store.collection("kb-clinic").documents() == [] and store.collection("thread-t1").documents() == []

    # `kbchat ingest`: one FAILED line each, with the same reason
    from kbchat.cli import main

    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "cli-data"))
    r = CliRunner().invoke(main, ["ingest", *(str(p) for p, _ in bad.values())], catch_exceptions=False)
    assert r.exit_code == 1
    assert sorted(ln for ln in r.stderr.splitlines() if ln.startswith("FAILED")) == sorted(
        f"FAILED {name}: {reason}" for name, (_, reason) in bad.items())
    assert "4 file(s) failed" in r.stdout and "Traceback" not in r.output


def test_the_chat_words_both_alike(settings, store, tmp_path):
    """One formatter: a base's name only switches the message keys."""
    from kbchat.ui.uploads import outcome_line, progress_line

    create_base(settings, "clinic", "Patient leaflets.")
    pdf = make_pdf(tmp_path / "in" / "fever.pdf", ["Fever in children: give fluids.", "Call 119 if drowsy."])
    added = _chat_upload(store, settings, pdf, "fever.pdf", [])
    assert outcome_line("en", added).startswith("Indexed **fever.pdf**: 2 pages, 2 passages in ")
    assert outcome_line("en", added, "clinic").startswith("Added **fever.pdf** to knowledge base **clinic**: 2 pages")
    again = _chat_upload(store, settings, pdf, "fever.pdf", [])
    assert outcome_line("en", again) == "**fever.pdf** is already indexed in this chat."
    assert outcome_line("en", again, "clinic") == "**fever.pdf** is already in knowledge base **clinic** (unchanged)."
    assert progress_line("en", Progress("fever.pdf", "reading", 1, 2)) == "Indexing **fever.pdf**: 1 / 2 pages read"
    zipped = tmp_path / "notes.zip"
    zipped.write_bytes(b"PK\x03\x04")
    failed = _base_add(store, settings, zipped, "notes.zip", [])
    only = "only PDF, Office (.docx .pptx .xlsx .odt), Markdown and text files can be added."
    assert outcome_line("en", failed) == f"**notes.zip** was not indexed: {only}"
    assert outcome_line("en", failed, "clinic") == f"**notes.zip** was not added to knowledge base **clinic**: {only}"
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"hello, not a pdf")
    failed = _chat_upload(store, settings, broken, "broken.pdf", [])
    assert outcome_line("en", failed) == "**broken.pdf** was not indexed: not a PDF"
    assert outcome_line("en", failed, "clinic") == "**broken.pdf** was not added to knowledge base **clinic**: not a PDF"


def test_kbchat_ingest_adds_through_the_routine(tmp_path, monkeypatch, hashes):
    import kbchat.uploads
    from kbchat.cli import main

    calls, seen = [], []
    real = kbchat.uploads.add_files

    def spy(*args, **kwargs):
        calls.append(kwargs)
        told = kwargs["progress"]
        kwargs["progress"] = lambda event: (seen.append(event), told(event))
        return real(*args, **kwargs)

    monkeypatch.setattr(kbchat.uploads, "add_files", spy)
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "data"))
    pdf = make_pdf(tmp_path / "in" / "zebra.pdf", ["Zebra networks overview.", "The zebra protocol uses port 7777."])
    r = CliRunner().invoke(main, ["ingest", str(pdf)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    [kw] = calls
    assert kw["origin"] == "cli" and kw["pooled"] and kw["added_by"].startswith("cli")
    [out] = [e for e in seen if isinstance(e, Outcome)]
    assert out.status == "added" and out.file.key == str(pdf.resolve()) and hashes.calls == 1
    assert f"zebra.pdf: 2 pages, {len(out.doc.passages)} passages, added in {out.seconds:.1f} s" in r.stdout
    r = CliRunner().invoke(main, ["ingest", str(pdf)], catch_exceptions=False)
    out = [e for e in seen if isinstance(e, Outcome)][-1]
    assert out.status == "unchanged" and f"zebra.pdf: 2 pages, unchanged, skipped ({out.seconds:.1f} s)" in r.stdout

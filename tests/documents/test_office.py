"""Office files converted by real LibreOffice, Markdown / text read directly, hostile inputs one line each."""

from __future__ import annotations

import json
import os
import stat
import time
import zipfile

import pytest
from click.testing import CliRunner

from kbchat.cli import main
from kbchat.documents.reader import read_document
from kbchat.errors import IngestError
from tests.fixtures.scanned_pdfs import docx, encrypted_ooxml, pptx, xlsx

pytestmark = pytest.mark.slow


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_docx_pptx_xlsx_md_txt_are_indexed_and_cited_with_a_page(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(data))
    folder = tmp_path / "in"
    docx(folder / "policy.docx", ["Travel policy. Economy class is booked for flights under six hours.",
                                  "Hotel nights in Zurich are reimbursed up to 240 francs per night."])
    pptx(folder / "roadmap.pptx", [("Roadmap 2027", "The warehouse robots arrive in spring."),
                                   ("Budget", "The pilot line in Osaka costs 3.2 million yen per month.")])
    xlsx(folder / "stock.xlsx", [["item", "count"], ["copper gaskets", "1337"]])
    (folder / "notes.md").write_text("# Notes\n\nThe kettle in room 4B descales every Friday.\n",
                                     encoding="utf-8")
    (folder / "faq.txt").write_bytes("問：影印機在哪裡？答：影印機在三樓東側走廊。".encode("big5"))
    r = run("ingest", str(folder))
    assert r.exit_code == 0, r.output
    for line in ("policy.docx: 2 pages", "roadmap.pptx: 2 pages", "stock.xlsx: 1 pages", "notes.md: 1 pages",
                 "faq.txt: 1 pages"):
        assert line in r.output, r.output

    def top(question):
        return json.loads(run("search", question, "--json", "--k", "1").output)[0]

    assert (top("hotel nights Zurich reimbursed francs")["source"], top("hotel nights Zurich")["page"]) == \
        ("policy.docx", 2)
    hit = top("pilot line in Osaka cost per month")
    assert (hit["source"], hit["page"], hit["ocr"]) == ("roadmap.pptx", 2, False)
    assert top("copper gaskets count")["source"] == "stock.xlsx"
    assert top("kettle descales")["source"] == "notes.md"
    assert "三樓東側走廊" in top("影印機在哪裡")["text"]

    # citations open the converted PDF (kept under the data dir, named by the original's hash)
    from kbchat.settings import Settings
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.loaders import load_embedder

    store = EmbeddedStore(data, load_embedder(Settings()))
    try:
        docs = {d.source: d for d in store.collection("knowledge").documents()}
    finally:
        store.close()
    converted = docs["policy.docx"].path
    assert converted == str(data / "converted" / f"{docs['policy.docx'].doc_hash}.pdf")
    import pymupdf

    with pymupdf.open(converted) as pdf:
        assert pdf.page_count == 2 and "Zurich" in pdf[1].get_text()
    assert docs["notes.md"].path.endswith("notes.md")  # text files have no PDF: the UI shows the passage


def test_unchanged_office_file_is_not_converted_again(tmp_path):
    path = docx(tmp_path / "a.docx", ["Alpha bravo charlie."])
    first = read_document(path, converted_dir=tmp_path / "conv")
    t0 = time.perf_counter()
    second = read_document(path, converted_dir=tmp_path / "conv", office_command="no-such-soffice")
    assert second.path == first.path and second.doc_hash == first.doc_hash  # from the cache, no LibreOffice
    assert time.perf_counter() - t0 < 5


def _encrypted_odt(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("META-INF/manifest.xml",
                   '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                   '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
                   '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
                   "</manifest:file-entry></manifest:manifest>")
        z.writestr("content.xml", os.urandom(64))
    return path


def test_hostile_office_inputs_get_one_line_each(tmp_path, pdf_factory):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.docx").write_bytes(b"")
    (d / "photo.docx").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    pdf = pdf_factory("real.pdf", ["A PDF under another name."])
    (d / "slides.pptx").write_bytes(pdf.read_bytes())
    with zipfile.ZipFile(d / "sheet.xlsx", "w") as z:  # a zip, but a Word document's parts
        z.writestr("[Content_Types].xml", "application/vnd.openxmlformats-officedocument.wordprocessingml")
    (d / "cut.docx").write_bytes(docx(tmp_path / "full.docx", ["Some text."]).read_bytes()[:300])
    encrypted_ooxml(d / "locked.docx")
    _encrypted_odt(d / "locked.odt")
    (d / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 100)
    (d / "blank.md").write_text("  \n\n  ", encoding="utf-8")
    (d / "run.exe").write_bytes(b"MZ")
    expected = {
        "empty.docx": "empty file (0 bytes)",
        "photo.docx": "not a Word document (the contents do not match the .docx name)",
        "slides.pptx": "not a PowerPoint presentation (the contents do not match the .pptx name)",
        "sheet.xlsx": "not an Excel workbook (the contents do not match the .xlsx name)",
        "cut.docx": "damaged Word document",
        "locked.docx": "password-protected",
        "locked.odt": "password-protected",
        "binary.txt": "not a text file (binary content)",
        "blank.md": "no text (only whitespace)",
        "run.exe": "unsupported file type '.exe' (supported: .pdf .docx .pptx .xlsx .odt .md .markdown .txt)",
    }
    for name, reason in expected.items():
        with pytest.raises(IngestError) as exc:
            read_document(d / name, converted_dir=tmp_path / "conv")
        assert str(exc.value) == f"{name}: {reason}"
        assert "\n" not in str(exc.value)


def test_a_conversion_that_hangs_is_stopped_at_the_time_limit(tmp_path):
    pid_file = tmp_path / "child.pid"
    fake = tmp_path / "soffice"  # a 'LibreOffice' that never finishes, with a child of its own
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    path = docx(tmp_path / "slow.docx", ["Never converted."])
    t0 = time.perf_counter()
    with pytest.raises(IngestError) as exc:
        read_document(path, converted_dir=tmp_path / "conv", office_command=str(fake), office_timeout=2)
    assert str(exc.value) == "slow.docx: conversion to PDF took longer than 2 s (LibreOffice stopped)"
    assert time.perf_counter() - t0 < 30
    import psutil

    child = int(pid_file.read_text())
    time.sleep(0.2)
    try:  # the whole process group was killed (a zombie waits for init to reap it)
        assert psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass
    assert not list((tmp_path / "conv").glob("*.pdf"))


def test_libreoffice_missing_is_one_line(tmp_path):
    path = docx(tmp_path / "a.docx", ["Text."])
    with pytest.raises(IngestError) as exc:
        read_document(path, converted_dir=tmp_path / "conv", office_command="no-such-soffice")
    assert str(exc.value) == ("a.docx: LibreOffice is not installed, needed for .docx files (apt-get install "
                              "libreoffice-core libreoffice-writer libreoffice-impress libreoffice-calc)")


def test_two_conversions_at_once_use_their_own_profiles(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = [docx(tmp_path / f"d{i}.docx", [f"Document number {i} talks about topic {i * 7}."])
             for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        docs = list(pool.map(lambda p: read_document(p, converted_dir=tmp_path / "conv"), paths))
    assert [f"topic {i * 7}" in docs[i].passages[0].text for i in range(2)] == [True, True]

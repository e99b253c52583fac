"""Scanned pages read by OCR (real Tesseract through PyMuPDF), through `kbchat ingest` / `kbchat search`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from kbchat.cli import main
from kbchat.documents.reader import read_document
from kbchat.documents.ocr import OcrConfig, OcrEngine, page_ranges
from tests.fixtures.scanned_pdfs import SCRIPTS, scanned_language_pdf, scanned_pdf

pytestmark = pytest.mark.slow

TESSDATA = OcrEngine(OcrConfig()).tessdata


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _mixed(tmp_path, name="mixed.pdf"):
    return scanned_pdf(tmp_path / "in" / name, [
        ("Page one is typed text. The reactor coolant inlet is rated for 4 bar.", "helv"),
        ("Page two was scanned. The spare valve stock is kept in warehouse seven.", "helv"),
        ("Page three is typed text again. The outlet manifold is made of stainless steel.", "helv"),
    ], scanned=[False, True, False])


def test_tesseract_and_the_five_language_packs_are_installed():
    engine = OcrEngine(OcrConfig())
    assert engine.problem is None, engine.problem
    assert set(OcrConfig().languages) <= engine.available and "osd" in engine.available


def test_scanned_pdfs_in_three_scripts_are_indexed_and_found_at_their_page(tmp_path, data_env):
    folder = tmp_path / "in"
    for lang in ("en", "zh-TW", "ja"):
        scanned_language_pdf(folder / f"scan-{lang}.pdf", lang)
    r = run("ingest", str(folder))
    assert r.exit_code == 0, r.output
    assert "WARNING" not in r.output
    queries = {
        "en": ("scan-en.pdf", "backup generator tested for forty minutes under full load"),
        "zh-TW": ("scan-zh-TW.pdf", "備用發電機在滿載狀態下測試了四十分鐘"),
        "ja": ("scan-ja.pdf", "予備発電機は全負荷で四十分間試験され"),
    }
    for lang, (source, question) in queries.items():
        r = run("search", question, "--json", "--k", "3")
        hits = json.loads(r.output)
        top = hits[0]
        assert (top["source"], top["page"], top["ocr"]) == (source, 2, True), (lang, hits)
        assert question.split()[0] in top["text"] or question[:6] in top["text"]
    plain = run("search", "備用發電機在滿載狀態下測試了四十分鐘", "--k", "1")
    assert "scan-zh-TW.pdf, page 2, scanned" in plain.output


def test_mixed_pdf_keeps_exact_page_numbers(tmp_path):
    doc = read_document(_mixed(tmp_path))
    by_page = {}
    for p in doc.passages:
        by_page.setdefault(p.page, []).append(p)
    assert sorted(by_page) == [1, 2, 3]
    assert doc.ocr_pages == [2] and not doc.warnings
    assert "warehouse seven" in " ".join(p.text for p in by_page[2]) and all(p.ocr for p in by_page[2])
    assert "4 bar" in by_page[1][0].text and not by_page[1][0].ocr
    assert "stainless steel" in by_page[3][0].text and not by_page[3][0].ocr


def test_without_tesseract_text_pages_are_indexed_and_one_line_names_the_skipped_page(
        tmp_path, data_env, monkeypatch):
    bin_dir = tmp_path / "bin"  # a PATH without tesseract, and no TESSDATA_PREFIX
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    r = run("ingest", str(_mixed(tmp_path)))
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("WARNING")]
    assert warnings == ["WARNING mixed.pdf: page 2 not read (scanned, no text layer): Tesseract OCR is not "
                        "installed (apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-tra "
                        "tesseract-ocr-chi-sim tesseract-ocr-jpn tesseract-ocr-kor)"], r.output
    assert "mixed.pdf: 3 pages" in r.output
    hits = json.loads(run("search", "stainless steel outlet manifold", "--json").output)
    assert {h["page"] for h in hits} == {1, 3}


def test_a_missing_language_pack_skips_only_the_pages_of_its_script(tmp_path):
    partial = tmp_path / "tessdata"  # English and script detection only: no Japanese pack
    partial.mkdir()
    for lang in ("eng", "osd"):
        os.symlink(os.path.join(TESSDATA, f"{lang}.traineddata"), partial / f"{lang}.traineddata")
    font, texts = SCRIPTS["ja"]
    path = scanned_pdf(tmp_path / "ja-en.pdf", [(texts[0], font), (SCRIPTS["en"][1][0], "helv")])
    doc = read_document(path, ocr=OcrConfig(tessdata=str(partial)))
    assert doc.warnings == ["page 1 not read (scanned, no text layer): no Tesseract language pack for "
                            "Japanese script (apt-get install tesseract-ocr tesseract-ocr-jpn)"]
    assert {p.page for p in doc.passages} == {2} and doc.ocr_pages == [2]


def test_ocr_page_limit_skips_later_scanned_pages_with_a_note(tmp_path):
    path = scanned_language_pdf(tmp_path / "long.pdf", "en", copies=2)  # 4 scanned pages
    pages_seen = []
    doc = read_document(path, ocr=OcrConfig(max_pages=2), on_ocr_page=lambda n, t: pages_seen.append((n, t)))
    assert pages_seen == [(1, 4), (2, 4)]
    assert doc.ocr_pages == [1, 2]
    assert doc.warnings == ["pages 3-4 not read (scanned, no text layer): over the OCR limit of 2 pages per "
                            "file (KBCHAT_OCR_MAX_PAGES)"]


def test_only_scanned_pages_and_no_ocr_is_one_clear_line(tmp_path):
    from kbchat.errors import IngestError

    path = scanned_language_pdf(tmp_path / "scan.pdf", "en")
    with pytest.raises(IngestError) as exc:
        read_document(path, ocr=OcrConfig(tessdata=str(tmp_path / "nothing-here")))
    assert str(exc.value).startswith("scan.pdf: scanned, not read: no Tesseract language pack for ")


def test_old_catalog_gets_the_ocr_column_and_keeps_its_passages(tmp_path, pdf_factory):
    from kbchat.settings import Settings
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.loaders import load_embedder

    data = tmp_path / "data"
    data.mkdir()
    con = sqlite3.connect(data / "catalog.sqlite")  # the passages table as catalogs had it before
    con.executescript(
        'CREATE TABLE passages (collection TEXT NOT NULL, id TEXT NOT NULL, doc_hash TEXT NOT NULL, '
        'source TEXT NOT NULL, page INTEGER NOT NULL, page_label TEXT, start INTEGER NOT NULL, '
        '"end" INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (collection, id)) WITHOUT ROWID;'
        "INSERT INTO passages VALUES ('kb', 'abc-1-0', 'abc', 'old.pdf', 1, NULL, 0, 5, 'hello');")
    con.commit()
    con.close()
    store = EmbeddedStore(data, load_embedder(Settings()))
    try:
        kb = store.collection("kb")
        assert kb.passages(["abc-1-0"])["abc-1-0"].ocr is False
        doc = read_document(_mixed(tmp_path))
        kb.add(doc)
        got = kb.passages([p.id for p in doc.passages])
        assert {p.page for p in got.values() if p.ocr} == {2}
    finally:
        store.close()


def test_page_ranges():
    assert page_ranges([7, 2, 3, 4]) == "2-4, 7" and page_ranges([5]) == "5"


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs the tesseract binary")
def test_script_detection_picks_one_scripts_packs(tmp_path):
    import pymupdf

    from kbchat.documents.ocr import page_png

    engine = OcrEngine(OcrConfig())
    got = {}
    for lang in ("en", "zh-TW", "ja", "ko"):
        doc = pymupdf.open(scanned_language_pdf(tmp_path / f"{lang}.pdf", lang))
        got[lang] = engine.languages_for(engine.detect_script(page_png(doc[0])))[0]
        doc.close()
    assert got == {"en": ("eng",), "zh-TW": ("chi_tra", "chi_sim", "jpn"), "ja": ("jpn",), "ko": ("kor",)}


def test_script_detection_only_when_the_packs_span_several_scripts():
    assert OcrEngine(OcrConfig()).detects
    assert not OcrEngine(OcrConfig(languages=("eng",))).detects
    assert not OcrEngine(OcrConfig(languages=("chi_tra", "chi_sim"))).detects
    assert not OcrEngine(OcrConfig(detect_script=False)).detects
    assert OcrConfig.parse_languages("eng+chi_tra, jpn ") == ("eng", "chi_tra", "jpn")


def test_citations_of_scanned_pages_say_so_in_every_ui_language():
    from kbchat.messages import MESSAGES, page_ref, t

    assert [page_ref(lang, 3, scanned=True) for lang in MESSAGES] == [
        "page 3, scanned", "第 3 頁（掃描）", "第 3 页（扫描）", "3 ページ（スキャン）", "3페이지 (스캔)"]
    assert page_ref("en", 3) == "page 3"
    for lang in MESSAGES:
        assert "12" in t(lang, "reading_ocr", name="a.pdf", page=12, total=40)
        assert ".docx" in t(lang, "only_supported")

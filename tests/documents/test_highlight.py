"""The cited passage highlighted in a cached copy of the PDF (real PyMuPDF, real Tesseract), read back."""

from __future__ import annotations

import pymupdf
import pytest

from kbchat.documents.reader import read_document
from kbchat.documents.highlight import cache_path, highlighted_pdf
from kbchat.documents.passages import Passage, file_hash
from kbchat.documents.pdf import read_pdf, text_flags
from tests.fixtures.scanned_pdfs import SCRIPTS, scanned_pdf

LONG = ("Intro text for the first page. " * 20,
        "The A100 delivers 312 teraflops of tensor performance. " * 6
        + "Its memory bandwidth is 2,039 gigabytes per second on the 80GB model. " * 6
        + "Multi-instance GPU partitions one card into seven instances. " * 6)


def _annots(path, page_number):
    doc = pymupdf.open(str(path))
    page = doc[page_number - 1]
    out = [(a.type[1], pymupdf.Rect(a.rect), a.vertices) for a in page.annots()]
    others = [a.type[1] for i, p in enumerate(doc) if i != page_number - 1 for a in p.annots()]
    doc.close()
    return out, others


def _char_boxes(path, page_number, passage: Passage, textpage_maker=None):
    """Boxes of the passage's characters on the original page, found from its offsets independently."""
    doc = pymupdf.open(str(path))
    page = doc[page_number - 1]
    tp = textpage_maker(page) if textpage_maker else page.get_textpage(flags=text_flags())
    boxes = []
    for block in page.get_text("rawdict", flags=text_flags(), textpage=tp)["blocks"]:
        for line in block.get("lines", []):
            for span in line["spans"]:
                for ch in span["chars"]:
                    if not ch["c"].isspace():
                        boxes.append((ch["c"], pymupdf.Rect(ch["bbox"])))
    text = page.get_text("text", flags=text_flags(), textpage=tp)
    doc.close()
    at = sum(1 for c in text[: passage.start] if not c.isspace())
    n = sum(1 for c in passage.text if not c.isspace())
    return boxes[at : at + n]


def _covered(rect_quads, box: pymupdf.Rect) -> bool:
    centre = pymupdf.Point((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
    return any(centre in pymupdf.Quad(q).rect for q in rect_quads)


def _quads(vertices):
    return [vertices[i : i + 4] for i in range(0, len(vertices), 4)]


def test_text_passage_is_highlighted_on_its_page_in_a_cached_copy(tmp_path, pdf_factory):
    pdf = pdf_factory("a100.pdf", list(LONG))
    before = file_hash(pdf)
    doc = read_pdf(pdf, chunk_size=400, chunk_overlap=0)
    passage = next(p for p in doc.passages if p.page == 2 and "bandwidth" in p.text)
    cache = tmp_path / "data" / "highlights"
    out = highlighted_pdf(pdf, passage, cache)
    assert out == cache_path(cache, passage) and out.parent == cache
    annots, elsewhere = _annots(out, 2)
    assert [a[0] for a in annots] == ["Highlight"] and elsewhere == []
    quads = _quads(annots[0][2])
    assert len(quads) >= 2  # one quad per line of a multi-line passage
    boxes = _char_boxes(pdf, 2, passage)
    assert "".join(c for c, _ in boxes) == "".join(passage.text.split())
    assert all(_covered(quads, b) for _, b in boxes)
    # characters outside the passage (the first line of the page) are not covered
    first_line = _char_boxes(pdf, 2, Passage("a100.pdf", 2, None, 0, 10, "The A100 d", passage.doc_hash))
    if passage.start > 60:
        assert not any(_covered(quads, b) for _, b in first_line)
    assert file_hash(pdf) == before  # the original is never written
    again = highlighted_pdf(pdf, passage, cache)
    assert again == out and len(list(cache.glob("*.pdf"))) == 1


def test_cjk_passage_across_lines_is_found(tmp_path, pdf_factory):
    text = SCRIPTS["zh-TW"][1][0] * 6
    pdf = pdf_factory("zh.pdf", [text], fontname="china-t")
    doc = read_pdf(pdf, chunk_size=300, chunk_overlap=0)
    passage = doc.passages[1]
    out = highlighted_pdf(pdf, passage, tmp_path / "hl")
    annots, _ = _annots(out, 1)
    quads = _quads(annots[0][2])
    boxes = _char_boxes(pdf, 1, passage)
    assert len(boxes) == len("".join(passage.text.split())) and all(_covered(quads, b) for _, b in boxes)


@pytest.mark.slow
def test_ocr_passage_is_highlighted_through_the_ocr_text_layer(tmp_path):
    font, texts = SCRIPTS["ja"]
    pdf = scanned_pdf(tmp_path / "scan.pdf", [(SCRIPTS["en"][1][0], "helv"), (texts[0] + texts[1], font)])
    doc = read_document(pdf)
    passage = next(p for p in doc.passages if p.page == 2)
    assert passage.ocr
    out = highlighted_pdf(pdf, passage, tmp_path / "hl")
    annots, elsewhere = _annots(out, 2)
    assert [a[0] for a in annots] == ["Highlight"] and elsewhere == []
    # an independent OCR of the original page: the passage's first and last characters lie in the quads
    src = pymupdf.open(str(pdf))
    page = src[1]
    tp = page.get_textpage_ocr(flags=text_flags(), language="jpn", dpi=300, full=True)
    chars = [(ch["c"], pymupdf.Rect(ch["bbox"]))
             for b in page.get_text("rawdict", flags=text_flags(), textpage=tp)["blocks"]
             for line in b.get("lines", []) for span in line["spans"] for ch in span["chars"]
             if not ch["c"].isspace()]
    src.close()
    seq = "".join(c for c, _ in chars)
    target = "".join(passage.text.split())
    quads = _quads(annots[0][2])
    for piece in (target[:12], target[-8:]):
        at = seq.find(piece)
        assert at >= 0, piece
        assert all(_covered(quads, box) for _, box in chars[at : at + len(piece)]), piece


def test_passage_that_is_not_on_the_page_gives_none(tmp_path, pdf_factory):
    pdf = pdf_factory("x.pdf", ["Nothing about zebras here."])
    ghost = Passage("x.pdf", 1, None, 0, 20, "Completely different words entirely", "f" * 64)
    assert highlighted_pdf(pdf, ghost, tmp_path / "hl") is None
    gone = Passage("x.pdf", 5, None, 0, 20, "Nothing about zebras", "f" * 64)
    assert highlighted_pdf(pdf, gone, tmp_path / "hl") is None
    assert highlighted_pdf(tmp_path / "missing.pdf", gone, tmp_path / "hl") is None
    notes = tmp_path / "notes.md"  # text sources have no PDF to mark
    notes.write_text("Nothing about zebras here.", encoding="utf-8")
    doc = read_document(notes)
    assert highlighted_pdf(notes, doc.passages[0], tmp_path / "hl") is None

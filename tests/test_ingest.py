"""read_pdf / split_passages on real generated PDFs."""

import pytest

from kbchat.errors import IngestError
from kbchat.ingest import file_hash, read_pdf, split_passages

EN = "The quick brown fox jumps over the lazy dog. " * 3


def test_pages_and_offsets(pdf_factory):
    path = pdf_factory("three.pdf", [f"Page one text. {EN}", f"Second page here. {EN}", "Third page alpha."])
    doc = read_pdf(path)
    assert doc.pages == 3 and doc.source == "three.pdf"
    assert doc.doc_hash == file_hash(path)
    assert {p.page for p in doc.passages} == {1, 2, 3}
    assert all(p.page_label is None for p in doc.passages)
    first = [p for p in doc.passages if p.page == 1][0]
    assert "Page one text." in first.text
    assert [p for p in doc.passages if p.page == 3][0].text == "Third page alpha."
    ids = [p.id for p in doc.passages]
    assert len(ids) == len(set(ids))


def test_no_passage_spans_pages(pdf_factory):
    pages = [f"Marker{i} start. " + EN * 8 + f" End{i}." for i in range(4)]
    doc = read_pdf(pdf_factory("long.pdf", pages), chunk_size=200, chunk_overlap=40)
    assert len(doc.passages) > 8
    for p in doc.passages:
        others = [f"Marker{i}" for i in range(4) if i + 1 != p.page] + [f"End{i}" for i in range(4) if i + 1 != p.page]
        assert not any(o in p.text for o in others)
        assert len(p.text) <= 200


def test_page_labels(pdf_factory):
    doc = read_pdf(pdf_factory("roman.pdf", ["Intro text.", "More text."], labels=["r"]))
    assert [p.page_label for p in doc.passages] == ["i", "ii"]
    assert [p.page for p in doc.passages] == [1, 2]


def test_cjk_split_at_sentence_ends(pdf_factory):
    sentence = "大型语言模型的推理需要大量显存和计算资源。"
    text = "".join(sentence.replace("推理", f"推理{i}") for i in range(40))
    doc = read_pdf(pdf_factory("zh.pdf", [text], fontname="china-s"))
    assert len(doc.passages) >= 3
    for p in doc.passages:
        assert p.text.endswith("。"), p.text[-10:]
        assert len(p.text) <= 330  # CJK passages are capped well below the Latin 800
    assert "推理0" in doc.passages[0].text and "推理39" in doc.passages[-1].text


def test_split_passages_sentences_and_overlap():
    text = " ".join(f"Sentence number {i} is here." for i in range(30))
    spans = split_passages(text, 120, 40)
    assert len(spans) > 5
    for s, e in spans:
        assert e - s <= 120
        assert text[s:e].startswith("Sentence") and text[s:e].endswith(".")
    # neighbours overlap by at least one sentence
    assert spans[1][0] < spans[0][1]


def test_split_traditional_and_mixed_terminators():
    text = "第一句話很重要！第二句話呢？第三句；最後一句…" * 20
    spans = split_passages(text, 200, 0)
    assert len(spans) > 1
    for s, e in spans:
        assert text[e - 1] in "！？；…"


def test_errors(tmp_path, pdf_factory):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    notpdf = tmp_path / "notes.pdf"
    notpdf.write_text("just some text, not a pdf")
    good = pdf_factory("good.pdf", ["Some text on a page."] * 3)
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(good.read_bytes()[:60])
    blank = pdf_factory("blank.pdf", ["", ""])

    import pymupdf

    enc = tmp_path / "secret.pdf"
    d = pymupdf.open(good)
    d.save(str(enc), encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    d.close()

    cases = {
        empty: "empty file (0 bytes)",
        notpdf: "not a PDF",
        truncated: "damaged or truncated PDF",
        blank: "no extractable text — scanned?",
        enc: "password-protected",
    }
    for path, reason in cases.items():
        with pytest.raises(IngestError) as ei:
            read_pdf(path)
        assert ei.value.reason == reason, (path.name, ei.value.reason)
        assert ei.value.file == path.name
    with pytest.raises(IngestError) as ei:
        read_pdf(good, max_pages=2)
    assert ei.value.reason == "too many pages (3, limit 2)"


def test_read_ahead_keeps_order_and_hands_back_errors(pdf_factory, tmp_path):
    import threading

    from kbchat.errors import IngestError
    from kbchat.ingest import read_ahead, read_pdf

    good = [pdf_factory(f"doc{i}.pdf", [f"Document {i} talks about topic {i}."]) for i in range(4)]
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"PK\x03\x04 not a pdf")
    paths = [good[0], bad, good[1], good[2], good[3]]
    threads = set()

    def read(p):
        threads.add(threading.current_thread().name)
        return read_pdf(p)

    out = list(read_ahead(paths, read))
    assert [p for p, _ in out] == paths
    assert isinstance(out[1][1], IngestError) and "not a PDF" in str(out[1][1])
    assert [d.passages[0].text for p, d in out if p != bad] == [f"Document {i} talks about topic {i}." for i in range(4)]
    assert all(name.startswith("pdf-read-ahead") for name in threads)
    assert list(read_ahead([], read)) == []


def test_pdfs_parsed_from_many_threads_at_once_come_out_right(pdf_factory):
    """PyMuPDF is not thread-safe: read_pdf serialises its calls, so parallel parses stay correct."""
    from concurrent.futures import ThreadPoolExecutor

    from kbchat.ingest import read_pdf

    paths = [pdf_factory(f"t{i}.pdf", [f"File {i} page {n} mentions the marmot." for n in range(30)])
             for i in range(6)]
    want = [[p.text for p in read_pdf(x).passages] for x in paths]
    with ThreadPoolExecutor(6) as pool:
        for _ in range(3):
            got = list(pool.map(lambda x: [p.text for p in read_pdf(x).passages], paths))
            assert got == want

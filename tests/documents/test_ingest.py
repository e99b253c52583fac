"""read_pdf / split_passages on real generated PDFs."""

import pytest

from kbchat.errors import IngestError
from kbchat.documents.passages import file_hash, split_passages
from kbchat.documents.pdf import read_pdf

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
    from kbchat.documents.passages import read_ahead
    from kbchat.documents.pdf import read_pdf

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

    from kbchat.documents.pdf import read_pdf

    paths = [pdf_factory(f"t{i}.pdf", [f"File {i} page {n} mentions the marmot." for n in range(30)])
             for i in range(6)]
    want = [[p.text for p in read_pdf(x).passages] for x in paths]
    with ThreadPoolExecutor(6) as pool:
        for _ in range(3):
            got = list(pool.map(lambda x: [p.text for p in read_pdf(x).passages], paths))
            assert got == want


def _layout_pdf(path, pages, title=None):
    """A PDF whose pages are lists of (font size, line) drawn top to bottom (headings need sizes)."""
    import pymupdf

    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page()
        y = 60.0
        for size, line in lines:
            page.insert_text((50, y), line, fontsize=size, fontname="helv")
            y += size * 1.6
    if title is not None:
        doc.set_metadata({"title": title})
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    doc.close()
    return path


def test_furniture_left_out_of_passages_offsets_still_page_offsets(tmp_path):
    import pymupdf

    animals = ["llamas", "otters", "marmots", "herons"]
    pages = [
        [(9, "ACME X200 | DATA SHEET | Confidential"), (10, f"The {a} widget spins at {i}000 rpm."),
         (10, f"Another line about {a} and their habits."), (9, f"Page {i + 1}")]
        for i, a in enumerate(animals)
    ]
    path = _layout_pdf(tmp_path / "sheet.pdf", pages)
    doc = read_pdf(path)
    texts = " ".join(p.text for p in doc.passages)
    assert "Confidential" not in texts and "Page 3" not in texts
    for a in animals:
        assert f"The {a} widget" in texts
    with pymupdf.open(path) as pdf:
        for p in doc.passages:
            page_text = pdf[p.page - 1].get_text("text", flags=pymupdf.TEXT_PRESERVE_WHITESPACE
                                                | pymupdf.TEXT_MEDIABOX_CLIP)
            assert p.text.split()[0] in page_text[p.start:p.end]


def test_furniture_needs_repetition_and_short_lines():
    from kbchat.documents.pdf import find_furniture

    header = "Vendor Guide v2 | page 7\n"
    assert find_furniture([header + "a\nb", header.replace("7", "8") + "c\nd"]) == set()  # 2 pages: too few
    pages = [header.replace("7", str(i)) + f"unique body {chr(97 + i)}\n" for i in range(4)]
    assert find_furniture(pages) == {"vendor guide v# | page #"}
    long_line = "The same long sentence of body text that happens to open every page of this document. "
    assert find_furniture([long_line + f"\n{w}" for w in ("alpha", "beta", "gamma", "delta")]) == set()


def test_passages_carry_title_and_section_not_in_their_text(tmp_path):
    pages = [
        [(20, "Technical Specifications"), (10, "GPU memory 48 GB GDDR6 with ECC."),
         (10, "Memory bandwidth 960 GB/s.")],
        [(10, "Max power consumption 300 W."), (16, "Warranty and Support"), (10, "Three years, limited.")],
    ]
    doc = read_pdf(_layout_pdf(tmp_path / "x.pdf", pages, title="NVIDIA X200 Data Sheet"), chunk_size=60,
                   chunk_overlap=0)
    by_text = {p.text: p for p in doc.passages}
    mem = next(p for t, p in by_text.items() if "960 GB/s" in t)
    assert mem.context == "NVIDIA X200 Data Sheet · Technical Specifications"
    assert "X200" not in mem.text
    power = next(p for t, p in by_text.items() if "300 W" in t)
    assert power.context == "NVIDIA X200 Data Sheet · Technical Specifications"  # carried to page 2
    warranty = next(p for t, p in by_text.items() if "Three years" in t)
    assert warranty.context == "NVIDIA X200 Data Sheet · Warranty and Support"


def test_title_falls_back_to_first_large_line_and_outline_labels(tmp_path):
    pages = [[(18, "Inference Handbook"), (10, "- Batching"), (10, "- 1. Dynamic batching fills the GPU."),
              (10, "- 2. Continuous batching inserts new sequences at each step.")]]
    doc = read_pdf(_layout_pdf(tmp_path / "h.pdf", pages), chunk_size=60, chunk_overlap=0)
    last = doc.passages[-1]
    assert "Continuous batching" in last.text
    assert last.context == "Inference Handbook · Batching"


def test_list_items_are_passage_boundaries():
    text = "- ZeroQuant\n- 1. group-wise weights and token-wise activations\n- 2. a fused inference backend\n" \
           "- 3. layer-by-layer knowledge distillation (LKD) without the original data"
    spans = split_passages(text, chunk_size=90, chunk_overlap=0)
    pieces = [text[s:e] for s, e in spans]
    item = "- 3. layer-by-layer knowledge distillation (LKD) without the original data"
    assert any(item in p for p in pieces)
    for p in pieces:  # no item is cut in the middle
        assert p.startswith("- ")

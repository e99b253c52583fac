"""Issue 27: a sentence broken by a page break is finished in its first page's passage; the next page's
fragment does not stand alone as a passage (real PDFs written by PyMuPDF)."""

from kbchat.documents.pdf import read_pdf

INTRO = ("A colonoscopy lets the doctor look at the lining of your large bowel with a thin camera. "
         "Have clear liquids only on the day before the test. ")


def test_sentence_across_a_page_break_is_joined_and_the_fragment_dropped(pdf_factory):
    pdf = pdf_factory("colon.pdf", [INTRO + "If you take blood thinners such as warfarin, tell",
                                    "your doctor seven days before the procedure."])
    doc = read_pdf(pdf)
    first = [p for p in doc.passages if p.page == 1]
    assert "tell your doctor seven days before the procedure." in first[-1].text
    assert not [p for p in doc.passages if p.page == 2]  # nothing left on page 2 but the continuation
    # offsets (and so the highlight) stay on the page where the passage starts
    import pymupdf

    from kbchat.documents.pdf import text_flags

    assert first[-1].end <= len(pymupdf.open(pdf)[0].get_text(flags=text_flags()))


def test_a_long_next_page_keeps_its_passage(pdf_factory):
    rest = "After the test you must not drive for 24 hours. " * 6
    doc = read_pdf(pdf_factory("colon2.pdf", [INTRO + "If you take blood thinners, tell",
                                              "your doctor seven days before the procedure. " + rest]))
    assert "tell your doctor seven days before the procedure." in [p for p in doc.passages if p.page == 1][-1].text
    page2 = [p for p in doc.passages if p.page == 2]
    assert page2 and "must not drive for 24 hours" in page2[0].text


def test_a_page_ending_a_sentence_is_left_alone(pdf_factory):
    doc = read_pdf(pdf_factory("whole.pdf", [INTRO, "Bring an adult who can take you home."]))
    assert [p.text for p in doc.passages if p.page == 2] == ["Bring an adult who can take you home."]
    assert "Bring an adult" not in doc.passages[0].text


def test_chinese_sentence_across_a_page_break(pdf_factory):
    pdf = pdf_factory("gastro.pdf", ["檢查前一天晚上10點以後禁食。如果您服用抗凝血藥物，請在檢查前七天告訴",
                                     "醫師，不要自行停藥。"], fontname="china-t")
    doc = read_pdf(pdf)
    assert "請在檢查前七天告訴醫師，不要自行停藥。" in doc.passages[0].text.replace(" ", "")
    assert len(doc.passages) == 1

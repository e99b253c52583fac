"""A citation lands on its passage (issue 27), in the real app and headless Debian Chromium.

The cited passage sits in the lower half of page 2 of a generated leaflet, below six paragraphs of other
text. Clicking its Source pill opens Chainlit's react-pdf viewer at page 2, and public/pdf-viewer.js
scrolls the viewer to the highlight annotation kbchat's route drew; public/pdf-viewer.css keeps pdf.js's
screen-reader copy of the highlighted text (``mark.overlaidText``) from being drawn over the page.

Measured in the page, not guessed: the highlight's box lies inside the viewer's scroll box and the window,
the viewer was scrolled down, the highlight is where PyMuPDF puts the passage's lines (lower half, scaled
to the canvas), each line of the text layer is as wide and as high as the page's own line, and the
overlaid copy takes no room. Screenshot: docs/screenshots/citation-lower-half.png when KBCHAT_SHOTS is set.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ask, wait_answer
from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.app(),
              pytest.mark.shots(REPO / "docs" / "screenshots")]

TOPICS = ["opening hours", "parking", "payment", "interpreters", "visitors", "records"]
FILLER = ("Section {n} of this leaflet is about {t}: the clinic keeps the same rules for {t} on every weekday, "
          "the front desk answers questions about {t} in person or by telephone, and the notes about {t} "
          "are reviewed by the clinic board once every year.")
CITED = ("The okapi booster vaccine is given six weeks after the first dose, into the upper arm muscle. "
         "A sore red arm for one or two days after the okapi booster is common and needs no treatment. "
         "Cool the arm with a damp cloth and call the okapi vaccine line if the redness spreads past the elbow. "
         "Children under two receive the okapi booster in the thigh instead of the arm. "
         "Keep the okapi booster card with the health booklet and bring it to every visit.")
CITED_TOP = 560  # PDF points from the top of an 842-point page: the passage starts in the lower half


def leaflet(path):
    """A 2-page PDF: a cover, then six ~250-character paragraphs (each longer than the passage overlap, so
    none joins the cited passage) and the cited paragraph in the lower half of page 2."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_textbox(pymupdf.Rect(50, 50, 545, 300), "Okapi clinic leaflet for patients.", fontsize=12)
    page = doc.new_page()
    for i, topic in enumerate(TOPICS):
        y = 50 + 55 * i
        page.insert_textbox(pymupdf.Rect(50, y, 545, y + 50), FILLER.format(n=i + 1, t=topic), fontsize=10)
    page.insert_textbox(pymupdf.Rect(50, CITED_TOP, 545, 760), CITED, fontsize=11)
    doc.save(str(path))
    doc.close()
    return path


def cited_lines(path) -> list[tuple[float, float, float, float]]:
    """The cited paragraph's line boxes on page 2, in PDF points (PyMuPDF)."""
    import pymupdf

    with pymupdf.open(str(path)) as doc:
        blocks = doc[1].get_text("dict")["blocks"]
    return [tuple(line["bbox"]) for b in blocks for line in b.get("lines", []) if line["bbox"][1] >= CITED_TOP - 5]


# Boxes (CSS px, window coordinates) of what the viewer shows, read in the page. ``view``: the part of the
# window that the page's scrolling ancestors let through; ``scrolled``: how far they are scrolled down.
MEASURE = """(cited) => {
  const page = document.querySelector('#side-view-content .react-pdf__Page');
  const hl = page && page.querySelector('.annotationLayer section.highlightAnnotation');
  if (!hl) return null;
  const r = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  const view = [0, 0, window.innerWidth, window.innerHeight];
  let scrolled = 0;
  for (let p = page.parentElement; p; p = p.parentElement) {
    if (!/(auto|scroll|hidden)/.test(getComputedStyle(p).overflowY)) continue;
    const b = r(p);
    view[0] = Math.max(view[0], b[0]); view[1] = Math.max(view[1], b[1]);
    view[2] = Math.min(view[2], b[2]); view[3] = Math.min(view[3], b[3]);
    scrolled += p.scrollTop;
  }
  const mark = hl.querySelector('mark.overlaidText');
  return {
    canvas: r(page.querySelector('canvas')), highlight: r(hl), view, scrolled, mark: mark ? r(mark) : null,
    spans: [...page.querySelectorAll('.textLayer span')].filter(s => s.textContent.trim() && cited.includes(s.textContent.trim()))
      .map(s => ({text: s.textContent, box: r(s)})),
  };
}"""


def test_citation_in_lower_half_of_page_is_scrolled_into_view(browser, app, stub, shots, tmp_path):
    from playwright.sync_api import expect

    pdf = leaflet(tmp_path / "okapi-leaflet.pdf")
    lines = cited_lines(pdf)
    assert len(lines) >= 4 and min(y0 for _, y0, _, _ in lines) > 842 / 2  # the premise: lower half

    stub.mode = "ok"
    ctx = browser.new_context(base_url=app.url, viewport={"width": 1280, "height": 720})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto("/")
    expect(page.locator("#chat-settings-open-modal")).to_be_visible()
    page.locator("#upload-button-input").set_input_files(str(pdf))
    expect(page.locator("#attachments")).to_contain_text(pdf.name)
    ask(page, "How long is the arm sore after the okapi booster vaccine?")
    answer = wait_answer(page, 0)
    expect(answer).to_contain_text(re.compile(r"Source 1 — okapi-leaflet\.pdf, page 2: “The okapi booster", re.IGNORECASE))
    answer.locator("a.element-link").filter(has_text=re.compile(r"source 1", re.IGNORECASE)).first.click()
    expect(page.locator("#side-view-content .annotationLayer section.highlightAnnotation")).to_be_attached()
    # the viewer settles (canvas drawn, scrolled to the highlight)
    page.wait_for_function(f"""cited => {{ const m = ({MEASURE})(cited);
        return m && m.scrolled > 0 && m.highlight[1] >= m.view[1] && m.highlight[3] <= m.view[3]; }}""",
                           arg=CITED, timeout=30_000)
    page.wait_for_timeout(500)
    m = page.evaluate(MEASURE, CITED)
    shots(page, "citation-lower-half")

    # in view: inside the part of the window the viewer shows, which was scrolled down to it
    assert m["scrolled"] > 100, m
    hx0, hy0, _, hy1 = m["highlight"]
    vx0, vy0, vx1, vy1 = m["view"]
    assert vy0 <= hy0 and hy1 <= vy1, m  # every line of the passage, top to bottom
    assert vx0 <= hx0 < vx1, m  # where its lines start (at 100 % the page is wider than the side panel)

    # where the page has the passage: PyMuPDF's line boxes scaled onto the canvas
    cx, cy, cr, _ = m["canvas"]
    scale = (cr - cx) / 595
    top, bottom = cy + min(b[1] for b in lines) * scale, cy + max(b[3] for b in lines) * scale
    assert abs(hy0 - top) < 4 and abs(hy1 - bottom) < 4, (m["highlight"], top, bottom)
    assert (hy0 - cy) / scale > 842 / 2  # the highlight is on the page's lower half

    # the text layer aligns with the page: each of its lines of the passage covers that line of the PDF
    spans = m["spans"]
    assert len(spans) == len(lines), (spans, lines)
    for span, (x0, y0, x1, y1) in zip(spans, lines):
        sx0, sy0, sx1, sy1 = span["box"]
        assert abs(sx0 - (cx + x0 * scale)) < 3 and abs(sx1 - (cx + x1 * scale)) < 0.03 * (x1 - x0) * scale, span
        assert abs((sy1 - sy0) - (y1 - y0) * scale) < 0.35 * (y1 - y0) * scale, span
        assert cy + y0 * scale - 4 < (sy0 + sy1) / 2 < cy + y1 * scale + 4, span
    # and pdf.js's copy of the highlighted text is not drawn over the page
    assert m["mark"] is not None and (m["mark"][2] - m["mark"][0]) * (m["mark"][3] - m["mark"][1]) == 0, m["mark"]
    ctx.close()

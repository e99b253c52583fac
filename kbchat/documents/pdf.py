"""PDF reading: pages, page labels, headings and furniture, passages with their context (pymupdf; ocr.py and
highlight.py work on the same pages).

Pages are read one by one; a passage never spans two pages and its offsets point into that page's text.
Each passage also carries its context (document title and nearest section heading), which the retrievers
see but citations do not show; page furniture repeated across a document is left out of passages.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kbchat.documents.passages import (
    CJK_RANGES,
    WS_RUN,
    ParsedPdf,
    Passage,
    clean_text,
    split_passages,
    text_weight,
)
from kbchat.errors import IngestError

if TYPE_CHECKING:
    from kbchat.documents.ocr import OcrConfig

def _page_label(page, number: int) -> str | None:
    try:
        label = page.get_label()
    except Exception:
        return None
    if label and label != str(number):
        return label
    return None


# PyMuPDF does not support simultaneous calls from several threads ("may crash Python", its docs
# say); calls from different threads one at a time are fine. The app parses uploads of several
# chats and the knowledge/ sync in worker threads, and the CLI reads the next file ahead while
# embedding: every MuPDF call goes through this lock.
MUPDF_LOCK = threading.RLock()


def text_flags() -> int:
    """The extraction flags passages and their offsets are taken with (the highlighter reads pages the
    same way, so offsets point at the same characters)."""
    import pymupdf

    return pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP


# Page furniture: a short line among the first or last few of a page that recurs (digits ignored, so
# page numbers match) on at least half the pages of a document of FURNITURE_MIN_PAGES or more. Only
# short lines: a long one is more likely body text that happens to repeat, and losing it costs more.
FURNITURE_EDGE = 4
FURNITURE_MAX = 60  # weighted characters (see _weight)
FURNITURE_MIN_PAGES = 3
FURNITURE_SHARE = 0.5
# A line is a heading when its font is this many points larger than the document's body text.
HEADING_STEP = 1.0
_CONTEXT_MAX = 160
_DIGITS = re.compile(r"\d+")
_OUTLINE_LABEL = re.compile(r"^[ \t]*[-•●○▪■◆*][ \t]+(\S.*?)[ \t]*$")
_NOT_LABEL = re.compile(r"[，。；：！？,;:!?()（）\[\]<>]|https?|\.(?:jpg|png)\b|^\d{1,2}[.)、]|\.$")
_WORDLIKE = re.compile(f"[A-Za-z{CJK_RANGES}]")
_FILE_TITLE = re.compile(r"\.(?:pdf|docx?|pptx?|xlsx?|indd|txt)$|^(?:untitled|slide \d+)$", re.I)


def _line_key(line: str) -> str:
    return WS_RUN.sub(" ", _DIGITS.sub("#", line)).strip().casefold()


def _edge_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of the first and last FURNITURE_EDGE non-blank lines of a page."""
    spans, pos = [], 0
    for line in text.split("\n"):
        if line.strip():
            spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    if len(spans) <= 2 * FURNITURE_EDGE:
        return spans
    return spans[:FURNITURE_EDGE] + spans[-FURNITURE_EDGE:]


def find_furniture(pages: list[str]) -> set[str]:
    """Keys (see _line_key) of header/footer lines repeated on at least half of a document's pages."""
    if len(pages) < FURNITURE_MIN_PAGES:
        return set()
    counts: dict[str, int] = {}
    for text in pages:
        keys = {_line_key(text[s:e]) for s, e in _edge_lines(text)
                if text_weight(text[s:e].strip()) <= FURNITURE_MAX}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    need = max(FURNITURE_MIN_PAGES, -(-len(pages) * FURNITURE_SHARE // 1))
    return {k for k, c in counts.items() if k and c >= need}


def mask_furniture(text: str, furniture: set[str]) -> str:
    """``text`` with its furniture lines blanked (same length, so passage offsets stay page offsets)."""
    if not furniture:
        return text
    spans = [(s, e) for s, e in _edge_lines(text) if _line_key(text[s:e]) in furniture]
    out = text
    for s, e in spans:
        out = out[:s] + " " * (e - s) + out[e:]
    # A page that would be left empty keeps its lines: they are its content (30 pages of "File 1 page N
    # mentions the marmot." look like furniture), and losing content costs more than keeping a header.
    return out if out.strip() else text


def _page_lines(page, text: str, flags: int) -> list[tuple[int, int, float]]:
    """(start, end, font size) of the page's text lines, found in ``text`` in reading order."""
    out: list[tuple[int, int, float]] = []
    pos = 0
    for block in page.get_text("dict", flags=flags)["blocks"]:
        for line in block.get("lines", ()):
            spans = [sp for sp in line["spans"] if sp["text"].strip()]
            if not spans:
                continue
            t = "".join(sp["text"] for sp in line["spans"]).strip()
            i = text.find(t, pos)
            if i < 0:
                continue
            size = max(spans, key=lambda sp: len(sp["text"].strip()))["size"]
            out.append((i, i + len(t), round(size * 2) / 2))
            pos = i + len(t)
    return out


def _body_size(lines_by_page: list[list[tuple[int, int, float]]]) -> float:
    """The font size carrying most characters of the document."""
    chars: dict[float, int] = {}
    for lines in lines_by_page:
        for s, e, size in lines:
            chars[size] = chars.get(size, 0) + (e - s)
    return max(chars, key=chars.get) if chars else 0.0


def _short(text: str) -> str:
    text = clean_text(text)
    return text if len(text) <= _CONTEXT_MAX else text[: _CONTEXT_MAX - 1].rstrip() + "…"


def _headings(text: str, lines, body: float) -> list[tuple[int, str, bool]]:
    """(offset, heading text, is_font_heading) of a page, in order: lines set in a larger font than the
    body (consecutive ones merged: "4.1" + "Virtual Machine Metrics"), and outline labels (a short
    list item without punctuation, such as "- ZeroQuant" above its numbered points)."""
    out: list[tuple[int, str, bool]] = []
    prev_heading_end = -2
    for s, e, size in lines:
        line = text[s:e]
        if not _WORDLIKE.search(line):
            continue
        if body and size >= body + HEADING_STEP and text_weight(line) <= 2 * _CONTEXT_MAX:
            if out and out[-1][2] and prev_heading_end >= 0 and not text[prev_heading_end:s].strip():
                out[-1] = (out[-1][0], _short(out[-1][1] + " " + line), True)
            else:
                out.append((s, _short(line), True))
            prev_heading_end = e
            continue
        m = _OUTLINE_LABEL.match(line)
        if m and text_weight(m.group(1)) <= 40 and not _NOT_LABEL.search(m.group(1)):
            out.append((s, _short(m.group(1)), False))
    return out


def doc_title(meta_title: str | None, first_page_headings: list[tuple[int, str, bool]]) -> str:
    """The document's title: its metadata title unless that is empty or a file name, else the first
    large-font line of page 1."""
    t = clean_text(meta_title or "")
    t = re.sub(r"^Microsoft (?:Word|PowerPoint) - ", "", t)
    if len(t) >= 3 and not _FILE_TITLE.search(t):
        return _short(t)
    for _, h, is_font in first_page_headings:
        if is_font:
            return h
    return ""


def _context(title: str, section: str, label: str) -> str:
    parts = [title]
    for p in (section, label):
        if p and p not in parts and p not in title:
            parts.append(p)
    return " · ".join(x for x in parts if x)


def read_pdf(
    path,
    *,
    chunk_size: int = 800,
    chunk_overlap: int = 120,
    source: str | None = None,
    on_page: Callable[[int, int], None] | None = None,
    max_pages: int | None = None,
    ocr: "OcrConfig | None" = None,
    on_ocr_page: Callable[[int, int], None] | None = None,
    doc_hash: str | None = None,
) -> ParsedPdf:
    """Read a PDF page by page into passages; raises IngestError with a user-facing reason.

    With ``ocr`` set, pages without a usable text layer are read by Tesseract (kbchat.documents.ocr) and their
    passages carry ``ocr=True``; ``on_ocr_page(page, total)`` is called before each such page.
    Scanned pages OCR cannot read are listed in ``warnings``. ``doc_hash``: the identity to record
    instead of the PDF's own hash (a converted Office file keeps its original's hash).
    """
    import pymupdf

    path = Path(path)
    name = source or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(name, f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise IngestError(name, "empty file (0 bytes)")
    if b"%PDF-" not in data[:1024]:
        raise IngestError(name, "not a PDF")
    doc_hash = doc_hash or hashlib.sha256(data).hexdigest()
    with MUPDF_LOCK:
        try:
            doc = pymupdf.open(stream=data, filetype="pdf")
        except Exception as exc:
            raise IngestError(name, "damaged or truncated PDF") from exc
    try:
        with MUPDF_LOCK:
            if doc.needs_pass or doc.is_encrypted:
                raise IngestError(name, "password-protected")
            try:
                total = doc.page_count
            except Exception as exc:
                raise IngestError(name, "damaged or truncated PDF") from exc
            try:
                meta_title = (doc.metadata or {}).get("title")
            except Exception:
                meta_title = None
        if total == 0:
            raise IngestError(name, "damaged or truncated PDF")
        if max_pages is not None and total > max_pages:
            raise IngestError(name, f"too many pages ({total}, limit {max_pages})")
        flags = text_flags()
        texts: list[str] = []
        labels: list[str | None] = []
        lines_by_page: list[list[tuple[int, int, float]]] = []
        ocr_pages: set[int] = set()  # indexes of pages whose text came from OCR
        scans = _ScanReader(doc, ocr, on_ocr_page) if ocr is not None else None
        for index in range(total):
            number = index + 1
            with MUPDF_LOCK:  # one page at a time: two files still interleave page by page
                try:
                    page = doc.load_page(index)
                    text = page.get_text("text", flags=flags)
                    lines = _page_lines(page, text, flags)
                except Exception as exc:
                    raise IngestError(name, "damaged or truncated PDF") from exc
                label = _page_label(page, number)
                scanned = scans is not None and scans.needs_ocr(page, text)
                del page  # dropped (a MuPDF call) while the lock is held
            if scanned:
                read = scans.read(index, total)
                if read is not None:  # OCR text has no font sizes: no headings from this page
                    text, lines = read, []
                    ocr_pages.add(index)
            texts.append(text)
            labels.append(label)
            lines_by_page.append(lines)
            if on_page:
                on_page(number, total)
    finally:
        with MUPDF_LOCK:
            doc.close()
            del doc
    warnings = scans.warnings() if scans else []
    passages = split_document(texts, labels, lines_by_page, meta_title, name, doc_hash,
                              chunk_size=chunk_size, chunk_overlap=chunk_overlap, ocr_pages=ocr_pages) \
        if any(t.strip() for t in texts) else []
    if not passages:
        if scans and scans.skipped:
            raise IngestError(name, "scanned, not read: " + next(iter(scans.skipped)))
        if scans and scans.done:
            raise IngestError(name, "no text found, also not by OCR")
        raise IngestError(name, "no extractable text — scanned?")
    return ParsedPdf(source=name, path=path, doc_hash=doc_hash, pages=total, passages=passages,
                     warnings=warnings, ocr_pages=sorted(i + 1 for i in ocr_pages))


class _ScanReader:
    """OCR of one document's scanned pages: the engine found once, the page limit, what was skipped."""

    def __init__(self, doc, config: "OcrConfig", on_ocr_page):
        self.doc = doc
        self.config = config
        self.on_ocr_page = on_ocr_page
        self._engine = None
        self.done: list[int] = []
        self.skipped: dict[str, list[int]] = {}  # reason -> page numbers

    @property
    def engine(self):
        if self._engine is None:
            from kbchat.documents.ocr import OcrEngine

            self._engine = OcrEngine(self.config)
        return self._engine

    def needs_ocr(self, page, text: str) -> bool:
        from kbchat.documents.ocr import needs_ocr

        return needs_ocr(page, text)

    def _skip(self, number: int, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(number)

    def read(self, index: int, total: int) -> str | None:
        """The OCR text of page ``index``, or None (skipped, the reason recorded)."""
        from kbchat.documents.ocr import install_hint, ocr_textpage, page_png

        number = index + 1
        engine = self.engine
        if engine.problem:
            self._skip(number, engine.problem)
            return None
        if len(self.done) >= self.config.max_pages:
            self._skip(number, f"over the OCR limit of {self.config.max_pages} pages per file "
                               "(KBCHAT_OCR_MAX_PAGES)")
            return None
        if self.on_ocr_page:
            self.on_ocr_page(number, total)
        script = None
        if engine.detects:  # e.g. only 'eng' configured: nothing to choose, no detection
            with MUPDF_LOCK:
                png = page_png(self.doc.load_page(index))
            script = engine.detect_script(png)  # a subprocess, outside the lock
        langs, missing = engine.languages_for(script)
        if not langs:
            self._skip(number, f"no Tesseract language pack for {script} script ({install_hint(missing)})")
            return None
        with MUPDF_LOCK:
            try:
                page = self.doc.load_page(index)
                tp = ocr_textpage(page, engine, langs, text_flags())
                text = page.get_text("text", flags=text_flags(), textpage=tp)
            except Exception as exc:
                self._skip(number, f"OCR failed ({' '.join(str(exc).split())[:120]})")
                return None
            finally:
                page = tp = None
        self.done.append(number)
        return text

    def warnings(self) -> list[str]:
        from kbchat.documents.ocr import page_ranges

        out = []
        for reason, pages in self.skipped.items():
            word = "page" if len(pages) == 1 else "pages"
            out.append(f"{word} {page_ranges(pages)} not read (scanned, no text layer): {reason}")
        return out


def split_document(
    texts: list[str],
    labels: list[str | None],
    lines_by_page: list[list[tuple[int, int, float]]],
    meta_title: str | None,
    source: str,
    doc_hash: str,
    *,
    chunk_size: int = 800,
    chunk_overlap: int = 120,
    ocr_pages: set[int] = frozenset(),
) -> list[Passage]:
    """Passages of a document's page texts: furniture left out, each with its title/section context.

    ``lines_by_page``: (start, end, font size) of each page's lines (for headings; may be empty lists).
    ``ocr_pages``: indexes of pages read by OCR (their passages carry ocr=True).
    """
    furniture = find_furniture(texts)
    body = _body_size(lines_by_page)
    headings = [_headings(t, lines, body) for t, lines in zip(texts, lines_by_page)]
    title = doc_title(meta_title, headings[0] if headings else [])
    passages: list[Passage] = []
    section = ""  # the last large-font heading, carried across pages
    for index, text in enumerate(texts):
        masked = mask_furniture(text, furniture)
        page_heads = headings[index]
        label = ""  # the last outline label, on this page only
        h = 0
        for s, e in split_passages(masked, chunk_size, chunk_overlap):
            while h < len(page_heads) and page_heads[h][0] <= s:
                section, label = _advance(section, label, page_heads[h])
                h += 1
            cleaned = clean_text(masked[s:e])
            if cleaned:
                ctx = _context(title, section, label)
                passages.append(Passage(source, index + 1, labels[index], s, e, cleaned, doc_hash,
                                        ocr=index in ocr_pages, context=ctx))
        for head in page_heads[h:]:  # headings after the last passage start govern the next page
            section, label = _advance(section, label, head)
    return join_page_breaks(passages, [mask_furniture(t, furniture) for t in texts])


# A sentence ends in one of these (closing quotes/brackets may follow); a page whose text stops elsewhere
# breaks a sentence that the next page finishes.
_SENTENCE_END = re.compile(r"[.!?。！？；;:：…](?:[\"'”’)）」』]*)\s*$")
_FIRST_SENTENCE = re.compile(r"\S.*?(?:[.!?](?:[\"'”’)）」』]*)(?=\s|$)|[。！？](?:[”’）」』]*))", re.DOTALL)
MAX_CONTINUATION = 400   # characters of the next page taken to finish a sentence
MIN_FRAGMENT = 60        # weighted characters: a page's first passage shorter than this, once joined, goes


def join_page_breaks(passages: list[Passage], texts: list[str]) -> list[Passage]:
    """A sentence broken by a page break is finished in the last passage of its first page (whose offsets,
    and highlight, stay on that page); the next page's first passage is dropped when it is no more than
    that continuation or too short to stand alone (issue 27: a 27-character fragment ranked second)."""
    out = list(passages)
    for i in range(len(out) - 1):
        prev, nxt = out[i], out[i + 1]
        if prev is None or nxt is None or nxt.page != prev.page + 1 or _SENTENCE_END.search(prev.text):
            continue
        head = texts[nxt.page - 1].lstrip()
        m = _FIRST_SENTENCE.match(head[:MAX_CONTINUATION])
        if not head or not m or head[0].isupper() or not (head[0].isalnum() or head[0] in "，、（(“"):
            continue
        cont = clean_text(m.group(0))
        joiner = "" if _CJK_END.search(prev.text) else " "
        out[i] = replace(prev, text=prev.text + joiner + cont)
        rest = clean_text(nxt.text)
        if rest == cont or rest.startswith(cont) and text_weight(rest[len(cont):].strip()) < MIN_FRAGMENT \
                or text_weight(rest) < MIN_FRAGMENT:
            out[i + 1] = None
    return [p for p in out if p is not None]


_CJK_END = re.compile("[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]$")


def _advance(section: str, label: str, head: tuple[int, str, bool]) -> tuple[str, str]:
    """(section, label) after passing heading ``head``: a font heading starts a new section."""
    _, text, is_font = head
    return (text, "") if is_font else (section, text)

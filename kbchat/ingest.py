"""PDF reading and passage splitting (the only pymupdf importer).

Pages are read one by one; a passage never spans two pages and its offsets point into that page's text.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from kbchat.errors import IngestError

if TYPE_CHECKING:
    from kbchat.ocr import OcrConfig

# Weight of one CJK character relative to a Latin one when sizing passages: MiniLM's word-piece
# tokenizer spends ~1 piece per CJK character but ~1 piece per 4-5 Latin characters, and truncates
# at 256 pieces. With chunk_size=800 a pure-CJK passage is capped at ~800/2.7 ≈ 300 characters.
CJK_WEIGHT = 2.7

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3000-\u303f\uff00-\uffef"
_CJK_CHAR = re.compile(f"[{_CJK}]")
# Sentence ends: CJK terminators (with closing quotes/brackets), Latin .!? followed by whitespace,
# or a blank line (paragraph break).
_BOUNDARY = re.compile(
    r"[。！？；…]+[”’」』）\)]*"
    r"|[.!?]+[\"'”’\)\]]*(?=\s)"
    r"|\n[ \t]*\n"
)
_WS_RUN = re.compile(r"\s+")


@dataclass(frozen=True)
class Passage:
    """A piece of one page's text, with where it came from."""

    source: str
    page: int
    page_label: str | None
    start: int
    end: int
    text: str
    doc_hash: str
    ocr: bool = False  # read by OCR from a scanned page: the text may hold recognition errors

    @property
    def id(self) -> str:
        """Stable id: document hash prefix, page and start offset."""
        return f"{self.doc_hash[:16]}-{self.page}-{self.start}"


@dataclass
class ParsedPdf:
    """A read PDF: identity, page count and passages.

    ``path`` is the PDF citations open (for an Office file, its converted copy); ``warnings`` are
    one-line notes on what was not read (scanned pages OCR could not read), for the user to see.
    """

    source: str
    path: Path
    doc_hash: str
    pages: int
    passages: list[Passage]
    warnings: list[str] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)


def file_hash(path) -> str:
    """sha256 hex digest of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weight(text: str) -> float:
    n_cjk = len(_CJK_CHAR.findall(text))
    return (len(text) - n_cjk) + CJK_WEIGHT * n_cjk


def _units(text: str) -> list[tuple[int, int]]:
    """Sentence-like spans (whitespace trimmed) between boundaries."""
    spans = []
    pos = 0
    for m in _BOUNDARY.finditer(text):
        spans.append((pos, m.end()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def _hard_split(text: str, s: int, e: int, limit: float) -> list[tuple[int, int]]:
    """Split an over-long span at whitespace (or anywhere for CJK) so each piece fits ``limit``."""
    out = []
    while s < e:
        w = 0.0
        i = s
        last_space = -1
        while i < e:
            w += CJK_WEIGHT if _CJK_CHAR.match(text[i]) else 1.0
            if w > limit:
                break
            if text[i].isspace():
                last_space = i
            i += 1
        if i >= e:
            out.append((s, e))
            break
        cut = last_space if last_space > s + (i - s) // 2 else i
        if cut <= s:
            cut = s + 1
        piece_end = cut
        while piece_end > s and text[piece_end - 1].isspace():
            piece_end -= 1
        out.append((s, max(piece_end, s + 1)))
        s = cut
        while s < e and text[s].isspace():
            s += 1
    return out


def split_passages(text: str, chunk_size: int, chunk_overlap: int) -> list[tuple[int, int]]:
    """(start, end) spans of ``text``: sentences packed up to ``chunk_size`` weighted chars, with overlap.

    CJK characters weigh CJK_WEIGHT, so CJK passages are shorter in characters.
    """
    units: list[tuple[int, int]] = []
    for s, e in _units(text):
        if _weight(text[s:e]) > chunk_size:
            units.extend(_hard_split(text, s, e, chunk_size))
        else:
            units.append((s, e))
    if not units:
        return []
    weights = [_weight(text[s:e]) for s, e in units]
    spans = []
    i = 0
    n = len(units)
    while i < n:
        j = i
        total = weights[i]
        while j + 1 < n and total + 1 + weights[j + 1] <= chunk_size:
            j += 1
            total += 1 + weights[j]
        spans.append((units[i][0], units[j][1]))
        if j + 1 >= n:
            break
        # next passage starts with the trailing sentences of this one that fit in the overlap
        m = j + 1
        back = 0.0
        while m - 1 > i and back + weights[m - 1] <= chunk_overlap:
            m -= 1
            back += weights[m] + 1
        i = m
    return spans


def clean_text(text: str) -> str:
    """Collapse whitespace; line breaks between CJK characters disappear."""

    def repl(m: re.Match) -> str:
        s, e = m.start(), m.end()
        src = m.string
        if s > 0 and e < len(src) and _CJK_CHAR.match(src[s - 1]) and _CJK_CHAR.match(src[e]):
            return ""
        return " "

    return _WS_RUN.sub(repl, text).strip()


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

    With ``ocr`` set, pages without a usable text layer are read by Tesseract (kbchat.ocr) and their
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
        if total == 0:
            raise IngestError(name, "damaged or truncated PDF")
        if max_pages is not None and total > max_pages:
            raise IngestError(name, f"too many pages ({total}, limit {max_pages})")
        flags = text_flags()
        passages: list[Passage] = []
        any_text = False
        scans = _ScanReader(doc, ocr, on_ocr_page) if ocr is not None else None
        for index in range(total):
            number = index + 1
            with MUPDF_LOCK:  # one page at a time: two files still interleave page by page
                try:
                    page = doc.load_page(index)
                    text = page.get_text("text", flags=flags)
                except Exception as exc:
                    raise IngestError(name, "damaged or truncated PDF") from exc
                label = _page_label(page, number)
                scanned = scans is not None and scans.needs_ocr(page, text)
                del page  # dropped (a MuPDF call) while the lock is held
            from_ocr = False
            if scanned:
                read = scans.read(index, total)
                if read is not None:
                    text, from_ocr = read, True
            if text.strip():
                any_text = True
            for s, e in split_passages(text, chunk_size, chunk_overlap):
                cleaned = clean_text(text[s:e])
                if cleaned:
                    passages.append(Passage(name, number, label, s, e, cleaned, doc_hash, from_ocr))
            if on_page:
                on_page(number, total)
        warnings = scans.warnings() if scans else []
        if not any_text or not passages:
            if scans and scans.skipped:
                raise IngestError(name, "scanned, not read: " + next(iter(scans.skipped)))
            if scans and scans.done:
                raise IngestError(name, "no text found, also not by OCR")
            raise IngestError(name, "no extractable text — scanned?")
    finally:
        with MUPDF_LOCK:
            doc.close()
            del doc
    return ParsedPdf(source=name, path=path, doc_hash=doc_hash, pages=total, passages=passages,
                     warnings=warnings, ocr_pages=list(scans.done) if scans else [])


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
            from kbchat.ocr import OcrEngine

            self._engine = OcrEngine(self.config)
        return self._engine

    def needs_ocr(self, page, text: str) -> bool:
        from kbchat.ocr import needs_ocr

        return needs_ocr(page, text)

    def _skip(self, number: int, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(number)

    def read(self, index: int, total: int) -> str | None:
        """The OCR text of page ``index``, or None (skipped, the reason recorded)."""
        from kbchat.ocr import install_hint, ocr_textpage, page_png

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
        from kbchat.ocr import page_ranges

        out = []
        for reason, pages in self.skipped.items():
            word = "page" if len(pages) == 1 else "pages"
            out.append(f"{word} {page_ranges(pages)} not read (scanned, no text layer): {reason}")
        return out


def read_ahead(paths: Iterable[Path], read: Callable[[Path], ParsedPdf]) -> Iterator[tuple[Path, object]]:
    """(path, ParsedPdf or the Exception its read raised), in order, reading the next file in a
    background thread while the caller embeds the current one. At most two parsed files are held."""
    from concurrent.futures import ThreadPoolExecutor

    def job(path: Path):
        try:
            return read(path)
        except Exception as exc:  # handed to the caller, in order
            return exc

    it = iter(paths)
    first = next(it, None)
    if first is None:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="pdf-read-ahead") as pool:
        current, fut = first, pool.submit(job, first)
        for path in it:
            nxt = pool.submit(job, path)  # starts as soon as the current read is done
            yield current, fut.result()
            current, fut = path, nxt
        yield current, fut.result()

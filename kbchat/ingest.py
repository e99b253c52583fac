"""PDF reading and passage splitting (the only pymupdf importer).

Pages are read one by one; a passage never spans two pages and its offsets point into that page's text.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from kbchat.errors import IngestError

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

    @property
    def id(self) -> str:
        """Stable id: document hash prefix, page and start offset."""
        return f"{self.doc_hash[:16]}-{self.page}-{self.start}"


@dataclass
class ParsedPdf:
    """A read PDF: identity, page count and passages."""

    source: str
    path: Path
    doc_hash: str
    pages: int
    passages: list[Passage]


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


def read_pdf(
    path,
    *,
    chunk_size: int = 800,
    chunk_overlap: int = 120,
    source: str | None = None,
    on_page: Callable[[int, int], None] | None = None,
    max_pages: int | None = None,
) -> ParsedPdf:
    """Read a PDF page by page into passages; raises IngestError with a user-facing reason."""
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
    doc_hash = hashlib.sha256(data).hexdigest()
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
        flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
        passages: list[Passage] = []
        any_text = False
        for index in range(total):
            number = index + 1
            with MUPDF_LOCK:  # one page at a time: two files still interleave page by page
                try:
                    page = doc.load_page(index)
                    text = page.get_text("text", flags=flags)
                except Exception as exc:
                    raise IngestError(name, "damaged or truncated PDF") from exc
                label = _page_label(page, number)
                del page  # dropped (a MuPDF call) while the lock is held
            if text.strip():
                any_text = True
            for s, e in split_passages(text, chunk_size, chunk_overlap):
                cleaned = clean_text(text[s:e])
                if cleaned:
                    passages.append(Passage(name, number, label, s, e, cleaned, doc_hash))
            if on_page:
                on_page(number, total)
        if not any_text or not passages:
            raise IngestError(name, "no extractable text — scanned?")
    finally:
        with MUPDF_LOCK:
            doc.close()
            del doc
    return ParsedPdf(source=name, path=path, doc_hash=doc_hash, pages=total, passages=passages)


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

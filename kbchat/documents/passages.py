"""What a document becomes: passages (with their page, offsets and context) and the ParsedPdf that holds
them, the splitter that cuts a page's text into passages, the file hash, and the read-ahead of files.

Every reader (pdf, office, ocr, the QA-sheet importer) produces these types; the stores keep them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

# Weight of one CJK character relative to a Latin one when sizing passages: MiniLM's word-piece
# tokenizer spends ~1 piece per CJK character but ~1 piece per 4-5 Latin characters, and truncates
# at 256 pieces. With chunk_size=800 a pure-CJK passage is capped at ~800/2.7 ≈ 300 characters.
CJK_WEIGHT = 2.7

CJK_RANGES = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3000-\u303f\uff00-\uffef"
_CJK_CHAR = re.compile(f"[{CJK_RANGES}]")
# Sentence ends: CJK terminators (with closing quotes/brackets), Latin .!? followed by whitespace,
# a blank line (paragraph break), or a line break before a list item ("- ", "• ", "3. ", "2) "):
# outlines and slides have no sentence punctuation, and without this an item was cut wherever the
# passage happened to fill up.
_BOUNDARY = re.compile(
    r"[。！？；…]+[”’」』）\)]*"
    r"|(?<!\b\d)(?<!\b\d\d)[.!?]+[\"'”’\)\]]*(?=\s)"  # not "1." / "12." (list numbers)
    r"|\n[ \t]*\n"
    r"|\n(?=[ \t]*(?:[-•●○▪■◆*>›»]|\d{1,2}[.)、])[ \t])"
)
WS_RUN = re.compile(r"\s+")


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
    # "Document title · section heading": part of what the retrievers see (see retrieval_text), never
    # shown as passage text in citations.
    context: str = ""

    @property
    def id(self) -> str:
        """Stable id: document hash prefix, page and start offset."""
        return f"{self.doc_hash[:16]}-{self.page}-{self.start}"


def join_context(context: str, text: str) -> str:
    """A context line above a passage text (just the text when there is no context)."""
    return f"{context}\n{text}" if context else text


def retrieval_text(p: Passage) -> str:
    """What the embedder and the keyword index see for a passage: its context line, then its text."""
    return join_context(p.context, p.text)


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


def text_weight(text: str) -> float:
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
        if text_weight(text[s:e]) > chunk_size:
            units.extend(_hard_split(text, s, e, chunk_size))
        else:
            units.append((s, e))
    if not units:
        return []
    weights = [text_weight(text[s:e]) for s, e in units]
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

    return WS_RUN.sub(repl, text).strip()


# A passage that is a row of an imported QA sheet (kbchat.sharing.sheets) has page = the row number and
# this page label; citations then say "row N" instead of "page N".
ROW_LABEL = "row {n}"


def row_of(page: int, page_label: str | None) -> int | None:
    """The sheet row a passage is, when it is one (its page label is "row N"), else None."""
    return page if page_label == ROW_LABEL.format(n=page) else None


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

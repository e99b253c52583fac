"""A copy of a stored PDF with the cited passage marked by a highlight annotation on its page.

The passage is found from its stored offsets: the page is read with the same extraction flags (and,
for a scanned page, the same OCR) as at ingest, so ``start`` counts the same characters; its
characters' boxes are merged per text line into the annotation's quads. The copy is cached under
<cache_dir> keyed by (document hash, page, passage id); the original file is only ever read.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from kbchat.documents.ocr import OcrConfig
from kbchat.documents.passages import Passage
from kbchat.documents.pdf import MUPDF_LOCK, text_flags

# Cached marked copies kept per cache folder; the oldest (by last use) are removed beyond this.
CACHE_FILES = 200


def cache_path(cache_dir, passage: Passage) -> Path:
    """Where the marked copy of ``passage``'s document is cached."""
    key = hashlib.sha1(f"{passage.id}\0{passage.end}\0{passage.text}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{passage.doc_hash[:16]}-p{passage.page}-{key}.pdf"


def highlighted_pdf(pdf_path, passage: Passage, cache_dir, *, ocr: OcrConfig | None = None) -> Path | None:
    """Path of a cached copy of ``pdf_path`` with ``passage`` highlighted on its page.

    None when the passage cannot be located on the page (the caller then serves the plain PDF).
    ``ocr``: how scanned pages were read at ingest (needed for passages with ``ocr=True``).
    """
    target = cache_path(cache_dir, passage)
    if target.is_file():
        os.utime(target)
        return target
    import pymupdf

    with MUPDF_LOCK:
        try:
            doc = pymupdf.open(str(pdf_path))
        except Exception:  # moved, deleted or damaged since ingest: the caller serves what it can
            return None
        if not doc.is_pdf:  # a .md / .txt source: MuPDF opens text too, but there is no PDF to mark
            doc.close()
            return None
    try:
        languages = None
        if passage.ocr:  # the page's script is detected as at ingest, by a subprocess outside the lock
            languages = ocr_languages(doc, passage.page, ocr or OcrConfig())
            if not languages:
                return None
        with MUPDF_LOCK:
            if not 1 <= passage.page <= doc.page_count:
                return None
            page = doc.load_page(passage.page - 1)
            quads = passage_quads(page, passage, ocr, languages=languages)
            if not quads:
                return None
            annot = page.add_highlight_annot(quads)
            annot.set_info(title="kbchat", content="cited passage")
            annot.update()
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            doc.save(str(tmp), garbage=1, deflate=True)
            annot = page = None
    finally:
        with MUPDF_LOCK:
            doc.close()
    os.replace(tmp, target)
    _trim(target.parent)
    return target


def ocr_languages(doc, page_number: int, config: OcrConfig) -> tuple[str, ...]:
    """The packs ingest read this scanned page with (its script detected again); () if OCR is unavailable."""
    from kbchat.documents.ocr import OcrEngine, page_png

    engine = OcrEngine(config)
    if engine.problem or not 1 <= page_number <= doc.page_count:
        return ()
    script = None
    if engine.detects:
        with MUPDF_LOCK:
            png = page_png(doc.load_page(page_number - 1))
        script = engine.detect_script(png)
    return engine.languages_for(script)[0]


def passage_quads(page, passage: Passage, ocr: OcrConfig | None = None, *,
                  languages: tuple[str, ...] | None = None) -> list:
    """The passage's line rectangles (as quads) on ``page``; [] when it is not found.

    Called with MUPDF_LOCK held. An OCR passage's page is OCR'd with ``languages`` (default: those
    ocr_languages finds; pass them in to keep the script detection outside the lock).
    """
    from kbchat.documents.ocr import OcrEngine, ocr_textpage

    flags = text_flags()
    if passage.ocr:
        config = ocr or OcrConfig()
        if languages is None:
            languages = ocr_languages(page.parent, passage.page, config)
        if not languages:
            return []
        textpage = ocr_textpage(page, OcrEngine(config), languages, flags)
    else:
        textpage = page.get_textpage(flags=flags)
    text = page.get_text("text", flags=flags, textpage=textpage)
    chars = _chars(page, textpage, flags)
    target = "".join(c for c in passage.text if not c.isspace())
    if not target:
        return []
    seq = "".join(c for c, _, _ in chars)
    at = sum(1 for c in text[: passage.start] if not c.isspace())
    if seq[at : at + len(target)] != target:  # offsets drifted (another extraction): find the text
        at = seq.find(target)
        if at < 0:
            return _search_fallback(page, passage, textpage)
    lines: dict[tuple[int, int], object] = {}
    import pymupdf

    for _c, bbox, line in chars[at : at + len(target)]:
        r = pymupdf.Rect(bbox)
        lines[line] = r if line not in lines else lines[line] | r
    return [r.quad for r in lines.values() if not r.is_empty]


def _chars(page, textpage, flags) -> list[tuple[str, tuple, tuple[int, int]]]:
    """Non-blank characters in reading order: (char, bbox, (block, line))."""
    out = []
    raw = page.get_text("rawdict", flags=flags, textpage=textpage)
    for b, block in enumerate(raw.get("blocks", [])):
        for ln, line in enumerate(block.get("lines", [])):
            for span in line.get("spans", []):
                for ch in span.get("chars", []):
                    c = ch.get("c", "")
                    if c and not c.isspace():
                        out.append((c, tuple(ch["bbox"]), (b, ln)))
    return out


def _search_fallback(page, passage: Passage, textpage) -> list:
    """Quads of the passage's sentences found by MuPDF's search (Latin text with changed offsets)."""
    words = passage.text.split()
    quads = []
    for i in range(0, len(words), 8):  # short needles: search does not cross every kind of line break
        needle = " ".join(words[i : i + 8])
        quads.extend(page.search_for(needle, quads=True, textpage=textpage))
    return quads


def _trim(folder: Path) -> None:
    files = sorted(folder.glob("*.pdf"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    for old in files[:-CACHE_FILES]:
        try:
            old.unlink()
        except OSError:
            pass

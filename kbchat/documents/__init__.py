"""A file becomes pages, then passages: the reader dispatches by type (reader.py) to PDF (pdf.py, the
only PyMuPDF text reader), Office via LibreOffice (office.py), scanned pages via Tesseract (ocr.py) and plain
text; passages.py holds the types every reader produces (Passage, ParsedPdf) and the splitter; highlight.py
draws a cited passage onto its page. Nothing here knows about stores, users or the UI.
"""

from __future__ import annotations

from kbchat import lazy_face

# name -> the module that owns it
_PUBLIC = {
    "read_document": "kbchat.documents.reader",
    "read_options": "kbchat.documents.reader",
    "is_supported": "kbchat.documents.reader",
    "ocr_config": "kbchat.documents.reader",
    "SUPPORTED_TYPES": "kbchat.documents.reader",
    "TEXT_TYPES": "kbchat.documents.reader",
    "Passage": "kbchat.documents.passages",
    "ParsedPdf": "kbchat.documents.passages",
    "file_hash": "kbchat.documents.passages",
    "read_ahead": "kbchat.documents.passages",
    "split_passages": "kbchat.documents.passages",
    "highlighted_pdf": "kbchat.documents.highlight",
}

__getattr__ = lazy_face(__name__, _PUBLIC)


__all__ = sorted(_PUBLIC)

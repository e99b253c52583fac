"""Any supported file to passages: ``read_document`` dispatches by type.

PDF: kbchat.documents.pdf.read_pdf (scanned pages by OCR). Office (.docx .pptx .xlsx .odt): converted to PDF
by LibreOffice (kbchat.documents.office), then read as that PDF, whose path citations open. Markdown and plain
text: read directly as one page per file (they have no pages; page 1 is the whole file, and the
passage splitter still breaks at blank lines, so headings start passages of their own paragraphs).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kbchat.documents.ocr import OcrConfig
from kbchat.documents.office import OFFICE_TYPES, check_office, convert_to_pdf
from kbchat.documents.passages import ParsedPdf, Passage, clean_text, split_passages
from kbchat.documents.pdf import read_pdf
from kbchat.errors import IngestError

if TYPE_CHECKING:
    from kbchat.settings import Settings

PDF_TYPES = (".pdf",)
TEXT_TYPES = (".md", ".markdown", ".txt")
SUPPORTED_TYPES = PDF_TYPES + tuple(OFFICE_TYPES) + TEXT_TYPES
# The upload dialog's accept list (MIME type -> suffixes), for the UI.
ACCEPT = {
    "application/pdf": [".pdf"],
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": [".docx"],
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": [".pptx"],
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": [".xlsx"],
    "application/vnd.oasis.opendocument.text": [".odt"],
    "text/markdown": [".md", ".markdown"],
    "text/plain": [".txt"],
}


def is_supported(path) -> bool:
    """True for the file types read_document reads (by suffix)."""
    return Path(path).suffix.lower() in SUPPORTED_TYPES


def check_supported(path, name: str | None = None) -> None:
    """Raise IngestError (named ``name``, default the file name) unless read_document reads this type."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        raise IngestError(name or path.name, f"unsupported file type '{suffix or path.name}' "
                                             f"(supported: {' '.join(SUPPORTED_TYPES)})")


def read_options(settings: "Settings") -> dict:
    """read_document's keyword arguments from Settings: ``read_document(path, **read_options(s))``."""
    return {
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "ocr": ocr_config(settings),
        "converted_dir": settings.data_dir / "converted",
        "office_timeout": settings.office_timeout,
        "office_command": settings.office_command,
    }


def ocr_config(settings: "Settings") -> OcrConfig | None:
    """The OcrConfig of these settings, or None when OCR is switched off (empty language list)."""
    langs = OcrConfig.parse_languages(settings.ocr_languages)
    if not langs:
        return None
    return OcrConfig(languages=langs, dpi=settings.ocr_dpi, max_pages=settings.ocr_max_pages,
                     tessdata=str(settings.ocr_tessdata) if settings.ocr_tessdata else None)


def read_document(
    path,
    *,
    chunk_size: int = 800,
    chunk_overlap: int = 120,
    source: str | None = None,
    on_page: Callable[[int, int], None] | None = None,
    on_ocr_page: Callable[[int, int], None] | None = None,
    max_pages: int | None = None,
    ocr: OcrConfig | None = OcrConfig(),
    converted_dir=None,
    office_timeout: float = 120.0,
    office_command: str = "soffice",
    doc_hash: str | None = None,
) -> ParsedPdf:
    """Read a PDF, Office, Markdown or text file into passages; raises IngestError (one line).

    ``on_page(done, total)`` after each page; ``on_ocr_page(page, total)`` before a page is OCR'd
    ("page 12 of 40 (OCR)"). ``converted_dir``: where converted Office PDFs are kept (citations
    open them); default a kbchat folder in the system temp dir. ``doc_hash``: the file's sha256 if the
    caller has it already (kbchat.uploads hashes each file once), else computed here.
    """
    path = Path(path)
    name = source or path.name
    suffix = path.suffix.lower()
    check_supported(path, name)
    pdf_kw = dict(chunk_size=chunk_size, chunk_overlap=chunk_overlap, source=name, on_page=on_page,
                  max_pages=max_pages, ocr=ocr, on_ocr_page=on_ocr_page)
    if suffix in PDF_TYPES:
        return read_pdf(path, doc_hash=doc_hash, **pdf_kw)
    data = _read_bytes(path, name)
    doc_hash = doc_hash or hashlib.sha256(data).hexdigest()
    if suffix in TEXT_TYPES:
        return _read_text(path, data, name, doc_hash, chunk_size, chunk_overlap, on_page)
    check_office(data, suffix, name)
    if converted_dir is None:
        import tempfile

        converted_dir = Path(tempfile.gettempdir()) / "kbchat-converted"
    pdf = convert_to_pdf(path, doc_hash, converted_dir, name=name, timeout=office_timeout,
                         command=office_command)
    return read_pdf(pdf, doc_hash=doc_hash, **pdf_kw)


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(name, f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise IngestError(name, "empty file (0 bytes)")
    return data


def decode_text(data: bytes, name: str) -> str:
    """Text of a .txt/.md file: UTF-8 (with or without BOM), UTF-16 with BOM, else the detected encoding
    (Big5, GB18030, Shift_JIS...). Raises IngestError for binary content."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:8192]:
        raise IngestError(name, "not a text file (binary content)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise IngestError(name, "not a text file (unknown encoding or binary content)")
    return str(best)


def _read_text(path, data, name, doc_hash, chunk_size, chunk_overlap, on_page) -> ParsedPdf:
    text = decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n")
    passages = []
    for s, e in split_passages(text, chunk_size, chunk_overlap):
        cleaned = clean_text(text[s:e])
        if cleaned:
            passages.append(Passage(name, 1, None, s, e, cleaned, doc_hash))
    if not passages:
        raise IngestError(name, "no text (only whitespace)")
    if on_page:
        on_page(1, 1)
    return ParsedPdf(source=name, path=Path(path), doc_hash=doc_hash, pages=1, passages=passages)

"""OCR of PDF pages without a usable text layer: Tesseract through PyMuPDF, the page's script detected first.

Which pages need OCR (``needs_ocr``), where Tesseract's language data is (``OcrEngine``), which
languages a page is read with (Tesseract's script detection, ``--psm 0``), and the OCR text page
itself (``ocr_textpage``), shared by ingest and the highlighter so both see the same text.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LANGUAGES = "eng+chi_tra+chi_sim+jpn+kor"

# A page with at most this many non-blank characters over an image covering at least
# IMAGE_COVER of it is a scan (a scanner stamp, a page number or a stray OCR word is not a text layer).
FEW_CHARS = 50
IMAGE_COVER = 0.3

# Tesseract's script detection (osd) -> the language packs that read it. Measured on generated
# pages (bench/ocr.py): one script's packs are 3-6x faster than all five together and as accurate
# or better (Korean 0.994 vs 0.885 with all five). osd calls a kanji-heavy Japanese page "Han":
# read by the Chinese packs alone it came out at 0.56, with jpn added at 0.98, and the Chinese
# pages lost nothing from the extra pack (about 1 s more a page). Adding eng to a CJK pack did not
# help on CJK pages with Latin model names and numbers.
SCRIPT_LANGUAGES = {
    "Latin": ("eng",),
    "Han": ("chi_tra", "chi_sim", "jpn"),
    "Japanese": ("jpn",),
    "Katakana": ("jpn",),
    "Hiragana": ("jpn",),
    "Korean": ("kor",),
    "Hangul": ("kor",),
}
# Which script family a pack reads: detection is skipped when the usable packs are all of one family.
_FAMILY = {"eng": "Latin", "chi_tra": "Han", "chi_sim": "Han", "jpn": "Japanese", "kor": "Korean"}
_SCRIPT_LINE = re.compile(r"^Script:\s*(\S+)", re.M)


def debian_package(lang: str) -> str:
    """The Debian package holding a Tesseract language pack: chi_tra -> tesseract-ocr-chi-tra."""
    return "tesseract-ocr-" + lang.replace("_", "-").lower()


def install_hint(langs) -> str:
    """'apt-get install tesseract-ocr tesseract-ocr-eng ...' for these language packs."""
    return "apt-get install tesseract-ocr " + " ".join(debian_package(lang) for lang in langs)


@dataclass(frozen=True)
class OcrConfig:
    """How scanned pages are read (built from Settings at the edges)."""

    languages: tuple[str, ...] = tuple(DEFAULT_LANGUAGES.split("+"))
    dpi: int = 300
    max_pages: int = 100          # OCR'd pages per file; later scanned pages are skipped with a warning
    tessdata: str | None = None   # language data; default TESSDATA_PREFIX, then `tesseract --list-langs`
    detect_script: bool = True    # False: every page is read with all configured languages

    @classmethod
    def parse_languages(cls, text: str) -> tuple[str, ...]:
        """'eng+chi_tra, jpn' -> ('eng', 'chi_tra', 'jpn')."""
        return tuple(dict.fromkeys(x for x in re.split(r"[+,\s]+", text.strip()) if x))


def _list_langs_folder(tesseract: str) -> str | None:
    """The language data folder the tesseract binary reports (as PyMuPDF's get_tessdata asks it)."""
    try:
        cp = subprocess.run([tesseract, "--list-langs"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'List of available languages in "(.+?)"', cp.stdout + cp.stderr)
    return m.group(1) if m else None


@functools.lru_cache(maxsize=8)
def _resolve(tessdata: str | None, prefix: str | None, path_env: str | None) -> tuple[str | None, str | None]:
    """(tessdata folder or None, tesseract binary or None); cached per (setting, env) triple."""
    binary = shutil.which("tesseract", path=path_env)
    folder = tessdata or prefix
    if not folder and binary:
        folder = _list_langs_folder(binary)
    return folder, binary


class OcrEngine:
    """Tesseract as found on this machine for one OcrConfig: its language data and binary.

    ``problem`` is None when OCR can run, else one line saying what is missing and how to install it.
    """

    def __init__(self, config: OcrConfig):
        self.config = config
        folder, self.binary = _resolve(config.tessdata, os.environ.get("TESSDATA_PREFIX"),
                                       os.environ.get("PATH"))
        self.tessdata = folder
        self.available: set[str] = set()
        if folder and Path(folder).is_dir():
            self.available = {p.name[: -len(".traineddata")] for p in Path(folder).glob("*.traineddata")}
        self.usable = tuple(lang for lang in config.languages if lang in self.available)
        self.missing = tuple(lang for lang in config.languages if lang not in self.available)
        if not folder:
            self.problem: str | None = f"Tesseract OCR is not installed ({install_hint(config.languages)})"
        elif not self.usable:
            self.problem = (f"no Tesseract language pack for {'+'.join(config.languages)} in {folder} "
                            f"({install_hint(config.languages)})")
        else:
            self.problem = None

    @property
    def detects(self) -> bool:
        """True when a page's script decides its packs: detection on, and packs of several scripts
        configured (installed or not: a page of a script whose pack is missing is skipped with a note)."""
        families = {_FAMILY.get(lang, lang) for lang in self.config.languages}
        return self.config.detect_script and len(families) > 1

    def detect_script(self, png: bytes) -> str | None:
        """Tesseract's script detection on a page image: 'Latin', 'Han', 'Japanese', 'Korean'... or None."""
        if not self.binary or "osd" not in self.available:
            return None
        env = dict(os.environ, OMP_THREAD_LIMIT="1")  # one core per page: the app parses files in threads
        try:
            cp = subprocess.run(
                [self.binary, "stdin", "stdout", "--psm", "0", "-l", "osd",
                 "--tessdata-dir", str(self.tessdata)],
                input=png, capture_output=True, timeout=60, env=env,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        m = _SCRIPT_LINE.search(cp.stdout.decode("utf-8", "replace"))
        return m.group(1) if m else None

    def languages_for(self, script: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(languages to read a page of ``script`` with, configured packs it needs that are missing).

        An unknown script, or one none of the configured languages covers, is read with all usable ones.
        """
        wanted = [lang for lang in SCRIPT_LANGUAGES.get(script or "", ()) if lang in self.config.languages]
        if not self.config.detect_script or not wanted:
            return self.usable, ()
        have = tuple(lang for lang in wanted if lang in self.available)
        return have, tuple(lang for lang in wanted if lang not in self.available)


def needs_ocr(page, text: str) -> bool:
    """True when the page has no usable text layer: (almost) no characters over a large image.

    Called with MUPDF_LOCK held. A blank page (no text, no image) is not OCR'd.
    """
    chars = sum(1 for c in text if not c.isspace())
    if chars > FEW_CHARS:
        return False
    area = abs(page.rect)
    if not area:
        return False
    covered = 0.0
    try:
        infos = page.get_image_info()
    except Exception:
        return False
    for info in infos:
        r = page.rect & type(page.rect)(info["bbox"])
        covered += abs(r) if r.is_valid and not r.is_empty else 0.0
    return covered / area >= IMAGE_COVER


def page_png(page, dpi: int = 150) -> bytes:
    """The page rendered grey at ``dpi`` as PNG bytes (for script detection). Called with MUPDF_LOCK held."""
    import pymupdf

    return page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")


def ocr_textpage(page, engine: OcrEngine, languages: tuple[str, ...], flags: int):
    """The page's OCR TextPage (whole page rendered at the configured dpi). Called with MUPDF_LOCK held."""
    return page.get_textpage_ocr(flags=flags, language="+".join(languages), dpi=engine.config.dpi,
                                 full=True, tessdata=engine.tessdata)


def page_ranges(pages: list[int]) -> str:
    """[2, 3, 4, 7] -> '2-4, 7'."""
    out: list[str] = []
    pages = sorted(set(pages))
    i = 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        out.append(str(pages[i]) if i == j else f"{pages[i]}-{pages[j]}")
        i = j + 1
    return ", ".join(out)

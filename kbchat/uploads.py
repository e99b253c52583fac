"""Adding files to a store collection: one routine for every way in (a chat's uploads, an admin's
additions to a knowledge base, the knowledge-folder sync, ``kbchat ingest``). Each file is hashed once,
read (kbchat.documents), embedded and stored (kbchat.search); its progress and outcome are typed events
that each edge words in its own way (kbchat.ui.uploads, kbchat.cli.main)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kbchat.documents.passages import ParsedPdf, file_hash, read_ahead
from kbchat.documents.reader import check_supported, read_document, read_options
from kbchat.errors import IngestError, KbchatError
from kbchat.search.base import AddResult, add_many

# Pages one file may have (a larger one is refused before any page is read), whichever way it comes in.
MAX_PAGES = 2000


@dataclass(frozen=True)
class FileToAdd:
    """One file to add: where its bytes are, the name users see, and the key it is stored under
    (default the name: a later file under the same key replaces it)."""

    path: Path
    name: str
    key: str | None = None

    @property
    def source_key(self) -> str:
        return self.key or self.name


@dataclass(frozen=True)
class Progress:
    """One step of one file: ``reading`` (pages read), ``reading_ocr`` (the page being OCR'd) or
    ``embedding`` (passages embedded), ``done`` of ``total``."""

    name: str
    stage: Literal["reading", "reading_ocr", "embedding"]
    done: int
    total: int


@dataclass(frozen=True)
class Outcome:
    """What became of one file: its ``status`` is the store's (added, replaced, unchanged, duplicate)
    or ``failed`` with ``error`` (an IngestError or another KbchatError) and its ``reason``."""

    file: FileToAdd
    doc: ParsedPdf | None = None
    result: AddResult | None = None
    error: KbchatError | None = None
    seconds: float = 0.0  # since the previous file's outcome (the next file is read meanwhile)

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def status(self) -> str:
        return self.result.status if self.result is not None else "failed"

    @property
    def other(self) -> str:
        """For a duplicate: the name of the document that already holds these bytes."""
        return self.result.doc.source if self.status == "duplicate" else ""

    @property
    def reason(self) -> str:
        """Why it failed, without the file name ("" if it did not)."""
        if self.error is None:
            return ""
        return getattr(self.error, "reason", None) or str(self.error)


Event = Progress | Outcome


@dataclass
class _Read:
    """A file read for adding; ``copy`` is the kept copy made for it (deleted if the file then fails)."""

    file: FileToAdd
    doc: ParsedPdf
    copy: Path | None

    def discard(self) -> None:
        if self.copy is not None:
            self.copy.unlink(missing_ok=True)


def add_files(
    store: Any,
    collection: str,
    files: Iterable[FileToAdd],
    *,
    settings: Any,
    origin: str,
    added_by: str = "",
    keep_dir: Path | None = None,
    drop_replaced: bool = False,
    lock=None,
    progress: Callable[[Event], None] | None = None,
    pooled: bool = False,
    max_pages: int = MAX_PAGES,
) -> list[Outcome]:
    """Add ``files`` to ``collection`` in order; returns one Outcome per file, each also sent to
    ``progress`` as it comes (with the Progress events of its reading and embedding before it).

    Each file is hashed once: the hash names its kept copy and is handed to the reader as the
    document's identity. ``keep_dir``: copy each file there as ``<hash><suffix>`` and read the copy
    (an Office file's converted PDF is kept beside it), so citations still open it once the original is
    gone; a copy made for a file that then fails is deleted. ``drop_replaced``: delete the kept copies of
    the version a file replaces (knowledge bases; a chat's earlier answers still cite theirs).
    ``pooled``: embed the passages of several files together (add_many: faster for many small files, no
    embedding progress); otherwise each file is embedded by its own add, with progress. ``lock`` is held
    around each write (the app's write lock). The next file is read while the current one embeds.

    One file's KbchatError (unsupported type, file not found, too many pages, broken or empty file...)
    is its failed Outcome; any other error propagates."""
    note = progress or (lambda event: None)
    coll = store.collection(collection)
    opts = read_options(settings)
    if keep_dir is not None:
        keep_dir = Path(keep_dir)
        opts["converted_dir"] = keep_dir
    guard = lock if lock is not None else contextlib.nullcontext()

    def read(f: FileToAdd) -> _Read:
        if not f.path.exists():
            raise IngestError(f.name, f"file not found ({f.path})")
        check_supported(f.name)
        source, copy = f.path, None
        try:
            digest = file_hash(f.path)
            if keep_dir is not None:
                keep_dir.mkdir(parents=True, exist_ok=True)
                source = keep_dir / f"{digest}{Path(f.name).suffix.lower()}"
                if not source.exists():
                    shutil.copyfile(f.path, source)
                    copy = source
        except OSError as exc:
            raise IngestError(f.name, f"cannot read file ({exc.strerror or exc})") from exc
        try:
            doc = read_document(
                source, source=f.name, doc_hash=digest, max_pages=max_pages,
                on_page=lambda done, total: note(Progress(f.name, "reading", done, total)),
                on_ocr_page=lambda page, total: note(Progress(f.name, "reading_ocr", page, total)),
                **opts)
        except BaseException:
            if copy is not None:
                copy.unlink(missing_ok=True)
            raise
        return _Read(f, doc, copy)

    outcomes: list[Outcome] = []
    t0 = time.perf_counter()

    def done(f: FileToAdd, doc, result: AddResult | None, error: KbchatError | None) -> None:
        nonlocal t0
        now = time.perf_counter()
        out = Outcome(f, doc, result, error, now - t0)
        t0 = now
        outcomes.append(out)
        note(out)

    def previous_hash(key: str) -> str | None:
        if not drop_replaced:
            return None
        return next((d.doc_hash for d in coll.documents() if d.source_key == key), None)

    def drop_previous(before: str | None, result: AddResult) -> None:
        if before is not None and keep_dir is not None and result.status == "replaced":
            drop_copies(coll, keep_dir, before)

    reads = read_ahead(files, read)
    if pooled:
        queue: deque = deque()

        def items():
            for f, got in reads:
                queue.append((f, got, previous_hash(f.source_key) if isinstance(got, _Read) else None))
                yield f.source_key, got.doc if isinstance(got, _Read) else got

        for _key, _doc, result in add_many(coll, items(), origin=origin, lock=lock, added_by=added_by):
            f, got, before = queue.popleft()
            if isinstance(result, Exception):
                if isinstance(got, _Read):
                    got.discard()
                if not isinstance(result, KbchatError):
                    raise result
                done(f, got.doc if isinstance(got, _Read) else None, None, result)
            else:
                drop_previous(before, result)
                done(f, got.doc, result, None)
        return outcomes

    for f, got in reads:
        if isinstance(got, Exception):
            if not isinstance(got, KbchatError):
                raise got
            done(f, None, None, got)
            continue
        try:
            with guard:
                before = previous_hash(f.source_key)
                result = coll.add(got.doc, source_key=f.source_key, origin=origin, added_by=added_by,
                                  on_progress=lambda n, total, f=f: note(Progress(f.name, "embedding", n, total)))
                drop_previous(before, result)
        except KbchatError as err:
            got.discard()
            done(f, got.doc, None, err)
            continue
        except BaseException:
            got.discard()
            raise
        done(f, got.doc, result, None)
    return outcomes


def drop_copies(coll, folder: Path, doc_hash: str) -> None:
    """Delete our copies of a document (original and converted PDF) once no active document uses them."""
    if not any(d.doc_hash == doc_hash for d in coll.documents()):
        for f in Path(folder).glob(f"{doc_hash}.*"):
            f.unlink(missing_ok=True)


__all__ = ["MAX_PAGES", "Event", "FileToAdd", "Outcome", "Progress", "add_files", "drop_copies"]

"""Knowledge bases: the ``knowledge/`` folder is the default base, each sub-folder ``knowledge/NAME/`` is
the base NAME (its description is the first paragraph of its README.md; README.<lang>.md, e.g.
README.zh-TW.md, is the same description in one UI language). Kept in step with the folders
(the app at start-up, ``kbchat sync``); documents are also added and removed one at a time by admins
(the app's /kb, ``kbchat kb``, ``kbchat ingest --kb``)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from kbchat.documents.passages import ParsedPdf
from kbchat.documents.reader import is_supported
from kbchat.errors import KbchatError
from kbchat.personas import resolve_language
from kbchat.search.base import AddResult, DocumentInfo, Store
from kbchat.uploads import MAX_PAGES, Event, FileToAdd, Outcome, Progress, add_files, drop_copies

log = logging.getLogger("kbchat")

DEFAULT_BASE = "default"
_BASE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# A base folder's README.md is its description, not one of its documents; README.<lang>.md (README.zh-TW.md,
# README.ja.md, …) is the description in that UI language, shown instead of README.md to that language's users.
DESCRIPTION_FILE = "README.md"
_DESCRIPTION_LANG = re.compile(r"^README\.([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)\.md$")
MAX_DESCRIPTION = 300
# Origins recorded in the catalog: the folder sync, an admin in the browser, the CLI.
ORIGIN_FOLDER = "knowledge"
ORIGIN_ADMIN = "admin"


def check_base_name(name: str) -> str:
    """``name`` if it can name a knowledge base (lower-case letters, digits, ``-``, ``_``; 1-40 chars)."""
    if not _BASE_NAME.match(name or ""):
        raise ValueError(f"not a knowledge-base name: {name!r} (use lower-case letters, digits, '-' and '_')")
    return name


def collection_name(base: str, settings: Any) -> str:
    """The store collection holding knowledge base ``base``: the default base keeps
    ``settings.shared_collection`` (data dirs of earlier versions stay valid); base NAME is ``kb-NAME``.
    Thread uploads live in ``thread-<id>``, so the two never collide."""
    if base == DEFAULT_BASE:
        return settings.shared_collection
    return "kb-" + check_base_name(base)


def base_of_collection(collection: str, settings: Any) -> str | None:
    """The knowledge base a collection holds, or None (a thread's uploads, another collection)."""
    if collection == settings.shared_collection:
        return DEFAULT_BASE
    if collection.startswith("kb-") and _BASE_NAME.match(collection[3:]):
        return collection[3:]
    return None


class UnknownBase(KbchatError):
    """A knowledge-base name that is not one of the known bases."""


@dataclass
class KnowledgeBase:
    """One knowledge base: its name, description, folder and store collection."""

    name: str
    description: str
    folder: Path
    collection: str


def is_description_file(path: Path, folder: Path) -> bool:
    """``path`` is a description of the base in ``folder`` (README.md or README.<lang>.md), not a document."""
    return path.parent == folder and (path.name == DESCRIPTION_FILE or bool(_DESCRIPTION_LANG.match(path.name)))


def description_file(folder: Path, lang: str | None = None) -> Path:
    """The README of ``folder`` for UI language ``lang``: README.<lang>.md when there is one for that language
    (zh-Hant-TW finds README.zh-TW.md, ja-JP README.ja.md), else README.md."""
    folder = Path(folder)
    if lang:
        try:
            found = {m.group(1).replace("_", "-"): p for p in folder.iterdir()
                     if (m := _DESCRIPTION_LANG.match(p.name)) and p.is_file()}
        except OSError:
            found = {}
        if found:
            best = resolve_language(lang, [*found, "en"])
            if best in found:
                return found[best]
    return folder / DESCRIPTION_FILE


def read_description(folder: Path, lang: str | None = None) -> str:
    """The first paragraph of the base's README (``description_file``: README.<lang>.md, else README.md)
    that is not a heading (one line, at most 300 chars)."""
    try:
        text = description_file(folder, lang).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return ""
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.strip().splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("#")]
        if lines:
            one = " ".join(" ".join(lines).split())
            return one if len(one) <= MAX_DESCRIPTION else one[: MAX_DESCRIPTION - 1] + "…"
    return ""


def base_names(settings: Any) -> list[str]:
    """The known bases: ``default`` and every sub-folder of the knowledge folder with a valid name."""
    root = Path(settings.knowledge_dir)
    subs = sorted(p.name for p in root.iterdir() if p.is_dir() and _BASE_NAME.match(p.name)) \
        if root.is_dir() else []
    return [DEFAULT_BASE, *(n for n in subs if n != DEFAULT_BASE)]


def get_base(settings: Any, name: str) -> KnowledgeBase:
    """The base ``name``; :class:`UnknownBase` lists the known ones."""
    known = base_names(settings)
    if name not in known:
        raise UnknownBase(f"unknown knowledge base '{name}' (known: {', '.join(known)}); "
                          f"create it with: kbchat kb create {name}",
                          key="kb_unknown", params={"name": name, "known": ", ".join(known)})
    root = Path(settings.knowledge_dir)
    folder = root if name == DEFAULT_BASE else root / name
    return KnowledgeBase(name, read_description(folder), folder, collection_name(name, settings))


def list_bases(settings: Any) -> list[KnowledgeBase]:
    """Every known base, the default first."""
    return [get_base(settings, n) for n in base_names(settings)]


def create_base(settings: Any, name: str, description: str = "") -> KnowledgeBase:
    """Create base ``name``: the folder ``knowledge/NAME/`` with a README.md holding the description."""
    try:
        check_base_name(name)
    except ValueError as err:
        raise KbchatError(str(err), key="kb_bad_name", params={"name": repr(name)}) from None
    if name == DEFAULT_BASE:
        raise KbchatError(f"'{DEFAULT_BASE}' is the knowledge folder itself; it always exists",
                          key="kb_default_exists", params={"name": DEFAULT_BASE})
    folder = Path(settings.knowledge_dir) / name
    if folder.exists():
        raise KbchatError(f"knowledge base '{name}' already exists ({folder}); edit {folder / DESCRIPTION_FILE} "
                          "to change its description", key="kb_exists",
                          params={"name": name, "folder": folder, "readme": folder / DESCRIPTION_FILE})
    description = " ".join((description or "").split())
    try:
        folder.mkdir(parents=True)
        (folder / DESCRIPTION_FILE).write_text(
            f"# {name}\n\n{description or 'Documents of the ' + name + ' knowledge base.'}\n\n"
            "Put this base's documents (PDF, Office, Markdown, text) in this folder; admins can also add "
            "them from the chat (/kb). This README is the base's description, not one of its documents.\n",
            encoding="utf-8")
    except OSError as err:
        raise KbchatError(f"cannot create {folder}: {err.strerror or err}", key="kb_cannot_create",
                          params={"folder": folder, "detail": err.strerror or err}) from None
    return get_base(settings, name)


# ---------------------------------------------------------------- one document at a time


def when(iso: str) -> str:
    """'2026-12-01 19:07 UTC' from the catalog's ISO time."""
    return (iso or "")[:16].replace("T", " ") + (" UTC" if iso else "")


def added_by_label(doc) -> str:
    """Who added a document, for listings: the user, or where it came from."""
    if doc.added_by:
        return doc.added_by
    return {ORIGIN_FOLDER: "knowledge folder"}.get(doc.origin, doc.origin or "-")


def stored_dir(settings: Any, base: str) -> Path:
    """Where copies of the files admins add to ``base`` are kept (the catalog's path points here)."""
    return Path(settings.data_dir) / "kb" / base


def add_to_base(store: Store, settings: Any, base: str, files: Iterable[FileToAdd], *, added_by: str,
                lock: threading.Lock | None = None,
                progress: Callable[[Event], None] | None = None) -> list[Outcome]:
    """Add files to ``base``, each under its file name (a new version of the same name replaces the old
    one atomically, Collection.add, and the old version's copy is deleted). Each file is copied to
    ``<data>/kb/<base>/<hash><suffix>`` first, so citations still open it after the upload is gone.
    One Outcome per file (kbchat.uploads.add_files); an unknown base raises UnknownBase."""
    kb = get_base(settings, base)
    return add_files(store, kb.collection, files, settings=settings, origin=ORIGIN_ADMIN, added_by=added_by,
                     keep_dir=stored_dir(settings, base), drop_replaced=True, lock=lock, progress=progress)


def add_document(store: Store, settings: Any, base: str, path: Path, *, name: str, added_by: str,
                 lock: threading.Lock | None = None, on_page=None, on_ocr_page=None,
                 on_embed=None) -> tuple[ParsedPdf, AddResult]:
    """One file added to ``base`` (add_to_base), its failure raised: (parsed document, AddResult).
    ``on_page``, ``on_ocr_page``, ``on_embed``: ``(done, total)`` callbacks of its progress."""
    calls = {"reading": on_page, "reading_ocr": on_ocr_page, "embedding": on_embed}

    def progress(event: Event) -> None:
        call = calls.get(event.stage) if isinstance(event, Progress) else None
        if call is not None:
            call(event.done, event.total)

    [out] = add_to_base(store, settings, base, [FileToAdd(Path(path), name)], added_by=added_by, lock=lock,
                        progress=progress)
    if out.error is not None:
        raise out.error
    return out.doc, out.result


def find_document(docs: list[DocumentInfo], which: str) -> DocumentInfo:
    """The document whose source key or file name is ``which`` (KbchatError when none or several)."""
    exact = [d for d in docs if d.source_key == which]
    if exact:
        return exact[0]
    named = [d for d in docs if d.source == which or Path(d.source_key).name == which]
    if len(named) == 1:
        return named[0]
    if not named:
        raise KbchatError(f"no document '{which}' in this knowledge base", key="kb_no_document",
                          params={"name": which})
    keys = ", ".join(d.source_key for d in named)
    raise KbchatError(f"several documents are named '{which}': give the full key ({keys})", key="kb_several",
                      params={"name": which, "keys": keys})


def remove_document(store: Store, settings: Any, base: str, which: str, *,
                    lock: threading.Lock | None = None) -> DocumentInfo:
    """Remove one document of ``base`` (by key or file name). A file synced from the knowledge folder is
    refused: the folder is its source (deleting the file there removes it at the next sync)."""
    kb = get_base(settings, base)
    coll = store.collection(kb.collection)
    doc = find_document(coll.documents(), which)
    if doc.origin == ORIGIN_FOLDER:
        raise KbchatError(f"{doc.source} comes from the folder ({doc.source_key}): delete the file there; "
                          "the next sync (app start or `kbchat sync`) removes it from the base",
                          key="kb_from_folder", params={"name": doc.source, "key": doc.source_key})
    with lock if lock is not None else contextlib.nullcontext():
        coll.remove(doc.source_key)
        if doc.origin == ORIGIN_ADMIN:  # our copy (never a file of the knowledge folder or the CLI's)
            drop_copies(coll, stored_dir(settings, base), doc.doc_hash)
    return doc


# ---------------------------------------------------------------- the folders


@dataclass
class SyncReport:
    """What a sync did (all bases together)."""

    files: int = 0
    added: int = 0
    removed: int = 0
    failed: int = 0
    folder: str = ""
    bases: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f" ({len(self.bases)} bases)" if len(self.bases) > 1 else ""
        return (f"{self.files} files in {self.folder}{where}: {self.added} indexed, {self.removed} removed, "
                f"{self.failed} failed")


def _base_files(folder: Path, *, top: bool) -> list[Path]:
    """The supported files of a base folder: the default base's are only those outside sub-folders."""
    if not folder.is_dir():
        return []
    found = folder.glob("*") if top else folder.rglob("*")
    return sorted(p for p in found if p.is_file() and is_supported(p) and not is_description_file(p, folder))


def sync_knowledge(store: Store, settings: Any, *, lock: threading.Lock | None = None,
                   on_file: Callable[[str, str], None] | None = None) -> SyncReport:
    """Index new and changed documents (PDF, Office, Markdown, text) of the knowledge folder into their
    bases: files directly in ``knowledge/`` into the default base, files of ``knowledge/NAME/`` (at any
    depth) into base NAME; drop the ones removed from the folders. Documents added to a base otherwise
    (admins, ``kbchat ingest``) stay. A sub-folder whose name cannot name a base is reported as failed.

    ``lock`` is held only around writes (embedding runs outside it); ``on_file(key, status)`` is
    called per file ("added", "replaced", "unchanged", "duplicate", "failed: reason", "removed")."""
    root = Path(settings.knowledge_dir)
    report = SyncReport(folder=str(root))
    note = on_file or (lambda key, status: None)
    if root.is_dir():
        for bad in sorted(p for p in root.iterdir() if p.is_dir() and not _BASE_NAME.match(p.name)
                          and not p.name.startswith(".")):
            report.failed += 1
            reason = ("not a knowledge-base name (use lower-case letters, digits, '-' and '_'); "
                      "its files are not indexed")
            log.warning("knowledge: %s/: %s", bad.name, reason)
            note(f"knowledge/{bad.name}/", f"failed: {reason}")
    for base in base_names(settings):
        folder = root if base == DEFAULT_BASE else root / base
        _sync_base(store, settings, base, folder, _base_files(folder, top=base == DEFAULT_BASE),
                   report, note, lock)
        report.bases.append(base)
    return report


def _sync_base(store, settings, base, folder: Path, files: list[Path], report: SyncReport, note, lock) -> None:
    root = Path(settings.knowledge_dir)
    coll = store.collection(collection_name(base, settings))
    known = {d.source_key for d in coll.documents() if d.origin == ORIGIN_FOLDER}
    seen: set[str] = set()
    report.files += len(files)

    def told(event: Event) -> None:
        if not isinstance(event, Outcome):
            return
        key = event.file.source_key
        seen.add(key)
        if event.error is not None:
            report.failed += 1
            log.warning("knowledge: %s", event.error)
            note(key, f"failed: {event.error}")
        elif event.status != "unchanged":
            report.added += event.status in ("added", "replaced")
            log.info("knowledge: %s %s", key, event.status)
            note(key, event.status)

    # Passages of several files are embedded together, outside the write lock (pooled).
    todo = (FileToAdd(p, p.name, key="knowledge/" + p.relative_to(root).as_posix()) for p in files)
    add_files(store, coll.name, todo, settings=settings, origin=ORIGIN_FOLDER, lock=lock, progress=told, pooled=True)
    # Gone from the folder, or moved into a sub-folder (now another base's).
    for key in sorted(known - seen):
        with lock if lock is not None else contextlib.nullcontext():
            if coll.remove(key):
                report.removed += 1
                note(key, "removed")


# ---------------------------------------------------------------- who may read which base (kbchat.records.access)


@dataclass(frozen=True)
class Reader:
    """Who is asking: a user name (None: nobody signed in) and whether they are an admin now."""

    name: str | None
    is_admin: bool = False


OPERATOR = Reader("cli", is_admin=True)  # the CLI without --as: reads everything, as before access control


def reader_of(accounts, name: str | None) -> Reader:
    """The Reader for user ``name`` as the database has them now (an unknown name reads nothing)."""
    acct = accounts.get(name) if name else None
    return Reader(acct.identifier, acct.is_admin) if acct is not None else Reader(None)


def readable_bases(access, reader: Reader, bases: list[str]) -> tuple[list[str], list[str]]:
    """(bases ``reader`` may read, bases withheld from them), each in the given order. Read from the
    database each call: an access change applies to the next question on every replica."""
    ok = access.readable(reader.name, reader.is_admin, bases)
    return ok, [b for b in bases if b not in ok]


def may_read_collection(settings: Any, access, reader: Reader, collection: str, *, thread_owner=None) -> bool:
    """Whether ``reader`` may read the passages of store ``collection``: a knowledge base's by its access,
    a chat's uploads (``thread-<id>``) only by the thread's owner (``thread_owner(thread_id)``) or an
    admin, any other collection by admins only."""
    if reader.is_admin:
        return True
    base = base_of_collection(collection, settings)
    if base is not None:
        return access.may_read(reader.name, False, base)
    if collection.startswith("thread-") and thread_owner is not None and reader.name:
        return thread_owner(collection[len("thread-"):]) == reader.name
    return False


__all__ = [
    "DEFAULT_BASE", "MAX_PAGES", "OPERATOR", "Reader", "may_read_collection", "readable_bases", "reader_of", "KnowledgeBase", "SyncReport", "UnknownBase", "add_document", "add_to_base",
    "added_by_label", "base_names", "base_of_collection", "check_base_name", "collection_name", "create_base",
    "description_file", "find_document", "get_base", "is_description_file", "list_bases", "read_description",
    "remove_document", "stored_dir",
    "sync_knowledge", "when",
]

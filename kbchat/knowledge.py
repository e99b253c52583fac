"""The shared knowledge base kept in step with the ``knowledge/`` folder (used by the app at start-up
and by ``kbchat sync``)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kbchat.errors import KbchatError
from kbchat.documents import is_supported, read_document, read_options
from kbchat.ingest import read_ahead
from kbchat.store import Store, add_many

log = logging.getLogger("kbchat")

MAX_PAGES = 2000

DEFAULT_BASE = "default"
_BASE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


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


@dataclass
class SyncReport:
    """What a sync did."""

    files: int = 0
    added: int = 0
    removed: int = 0
    failed: int = 0
    folder: str = ""

    def __str__(self) -> str:
        return (f"{self.files} files in {self.folder}: {self.added} indexed, {self.removed} removed, "
                f"{self.failed} failed")


def sync_knowledge(store: Store, settings: Any, *, lock: threading.Lock | None = None,
                   on_file: Callable[[str, str], None] | None = None) -> SyncReport:
    """Index new and changed documents (PDF, Office, Markdown, text) of ``settings.knowledge_dir`` into the shared collection and drop
    the ones removed from the folder; documents added to the base otherwise stay.

    ``lock`` is held only around writes (embedding runs outside it); ``on_file(key, status)`` is
    called per file ("added", "replaced", "unchanged", "duplicate", "failed: reason", "removed")."""
    folder = Path(settings.knowledge_dir)
    coll = store.collection(settings.shared_collection)
    known = {d.source_key: d for d in coll.documents() if d.origin == "knowledge"}
    report = SyncReport(folder=str(folder))
    seen: set[str] = set()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_supported(p)) \
        if folder.is_dir() else []
    report.files = len(files)
    note = on_file or (lambda key, status: None)

    def read(path: Path):
        return read_document(path, max_pages=MAX_PAGES, **read_options(settings))

    def items():
        for path, doc in read_ahead(files, read):  # the next file is parsed while this one embeds
            key = "knowledge/" + path.relative_to(folder).as_posix()
            seen.add(key)
            if isinstance(doc, Exception) or not (key in known and known[key].doc_hash == doc.doc_hash):
                yield key, doc

    # Passages of several files are embedded together, outside the write lock (add_many).
    for key, _doc, result in add_many(coll, items(), origin="knowledge", lock=lock):
        if isinstance(result, KbchatError):
            report.failed += 1
            log.warning("knowledge: %s", result)
            note(key, f"failed: {result}")
        elif isinstance(result, Exception):
            raise result
        else:
            report.added += result.status in ("added", "replaced")
            log.info("knowledge: %s %s", key, result.status)
            note(key, result.status)
    for key in sorted(set(known) - seen):
        with lock if lock is not None else contextlib.nullcontext():
            if coll.remove(key):
                report.removed += 1
                note(key, "removed")
    return report


__all__ = ["DEFAULT_BASE", "MAX_PAGES", "check_base_name", "collection_name", "SyncReport", "sync_knowledge"]

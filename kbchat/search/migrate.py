"""``kbchat migrate --to postgresql://…``: copy an embedded data dir (the SQLite database, the catalog's
documents and passages, Chroma's vectors) into PostgreSQL, without re-embedding, and verify the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, text

from kbchat.errors import KbchatError

_BATCH = 500


@dataclass
class Recorded:
    """The embedder a collection's vectors were written with, as recorded (nothing is loaded)."""

    name: str
    dim: int
    precision: str = "fp32"

    def vectors_compatible(self, written_by: str | None) -> str:
        return ""


@dataclass
class Report:
    """What was copied: rows per SQL table, (documents, passages) per collection."""

    tables: dict[str, int] = field(default_factory=dict)
    collections: dict[str, tuple[int, int]] = field(default_factory=dict)


def migrate(settings, to_url: str, *, on_line=lambda s: None) -> Report:
    """Copy the embedded store and SQLite database of ``settings`` into the empty PostgreSQL at ``to_url``;
    raises KbchatError if the target is not empty or a count differs afterwards."""
    import chromadb

    from kbchat.records.database import Database, database_url, metadata, redact_url
    from kbchat.search.store import EmbeddedStore

    src_url = database_url(settings)
    if not src_url.startswith("sqlite"):
        raise KbchatError("kbchat migrate copies an embedded data dir: unset KBCHAT_DATABASE_URL (the source)")
    if not to_url.startswith("postgresql"):
        raise KbchatError(f"--to must be a postgresql:// URL, not {redact_url(to_url)}")
    data = Path(settings.data_dir)
    if not (data / "catalog.sqlite").exists() and not (data / "kbchat.sqlite").exists():
        raise KbchatError(f"no kbchat data dir at {data}")
    src = Database(src_url)
    dst = Database(to_url)
    report = Report()
    try:
        with dst.connect() as c:
            busy = [t.name for t in metadata.sorted_tables if t.name != "kbchat_meta"
                    and c.execute(select(func.count()).select_from(t)).scalar()]
            busy += ["kb_collections"] if c.execute(text("SELECT count(*) FROM kb_collections")).scalar() else []
        if busy:
            raise KbchatError(f"the target database is not empty ({', '.join(busy)}): migrate into a new database")
        # The SQL tables, in one transaction.
        with src.connect() as s, dst.begin() as d:
            for t in metadata.sorted_tables:
                rows = [dict(r) for r in s.execute(t.select()).mappings()]
                if t.name == "kbchat_meta":
                    d.execute(t.delete())
                for i in range(0, len(rows), _BATCH):
                    d.execute(t.insert(), rows[i : i + _BATCH])
                report.tables[t.name] = len(rows)
                on_line(f"{t.name}: {len(rows)} rows")
        # The passage store, collection by collection; vectors come from Chroma as they are.
        if (data / "catalog.sqlite").exists():
            client = chromadb.PersistentClient(path=str(data / "chroma"),
                                               settings=chromadb.Settings(anonymized_telemetry=False))
            names = EmbeddedStore(data, None).names()
            for name in names:
                report.collections[name] = _copy_collection(data, client, dst, name)
                docs, n = report.collections[name]
                on_line(f"collection {name}: {docs} documents, {n} passages")
        _verify(src, dst, report)
    finally:
        src.close()
        dst.close()
    return report


def _copy_collection(data: Path, client, dst, name: str) -> tuple[int, int]:
    from kbchat.search.pgstore import PgStore
    from kbchat.search.store import EmbeddedStore, chroma_name

    chroma = client.get_collection(chroma_name(name), embedding_function=None)
    meta = chroma.metadata or {}
    rec = Recorded(str(meta.get("embedder")), int(meta.get("dim", 0)), meta.get("embedder_variant") or "fp32")
    src = EmbeddedStore(data, rec).collection(name)
    target = PgStore(dst, rec).collection(name)
    docs = src.documents()
    for h in sorted({d.doc_hash for d in docs}):
        got = chroma.get(where={"doc_hash": h}, include=["embeddings"])
        ids = list(got["ids"])
        vecs = np.asarray(got["embeddings"], dtype=np.float32)
        by_id = src.passages(ids)
        order = sorted(range(len(ids)), key=lambda i: ids[i])
        for i in range(0, len(order), _BATCH):
            part = [j for j in order[i : i + _BATCH] if ids[j] in by_id]
            target.write_rows([by_id[ids[j]] for j in part], vecs[part])
    with dst.begin() as c:
        for d in docs:
            c.execute(text(
                "INSERT INTO kb_documents (collection, source_key, source, path, doc_hash, pages, passages, origin, "
                "added_at, added_by, active) VALUES (:c, :k, :s, :p, :h, :pg, :n, :o, :at, :by, true)"),
                {"c": name, "k": d.source_key, "s": d.source, "p": d.path, "h": d.doc_hash, "pg": d.pages,
                 "n": d.passages, "o": d.origin, "at": d.added_at, "by": d.added_by})
    return len(docs), len(src)


def _verify(src, dst, report: Report) -> None:
    """Count again on both sides; any difference is an error naming it."""
    from kbchat.records.database import metadata

    wrong = []
    with dst.connect() as c:
        for t in metadata.sorted_tables:
            n = c.execute(select(func.count()).select_from(t)).scalar()
            if t.name != "kbchat_meta" and n != report.tables[t.name]:
                wrong.append(f"{t.name}: {report.tables[t.name]} copied, {n} in PostgreSQL")
        for name, (docs, passages) in report.collections.items():
            d, p = c.execute(text(
                "SELECT count(*), COALESCE(SUM(passages), 0) FROM kb_documents WHERE collection=:c AND active"),
                {"c": name}).one()
            rows = c.execute(text(
                "SELECT count(*) FROM kb_passages p WHERE collection=:c AND EXISTS (SELECT 1 FROM kb_documents "
                "d WHERE d.collection=:c AND d.doc_hash=p.doc_hash AND d.active)"), {"c": name}).scalar()
            distinct = c.execute(text(
                "SELECT COALESCE(SUM(passages), 0) FROM (SELECT DISTINCT doc_hash, passages FROM kb_documents "
                "WHERE collection=:c AND active) x"), {"c": name}).scalar()
            if d != docs or distinct != passages or rows != passages:
                wrong.append(f"collection {name}: {docs} documents / {passages} passages in the data dir, "
                             f"{d} / {rows} in PostgreSQL")
    if wrong:
        raise KbchatError("migration incomplete: " + "; ".join(wrong))

"""The store contract, run against both implementations: embedded (Chroma + tantivy + SQLite catalog in the
data dir) and PostgreSQL (kbchat.pgstore: pgvector + BM25 in SQL), with the real embedder."""

import threading
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import text

from kbchat.errors import EmbedderMismatch
from kbchat.documents.passages import ParsedPdf, Passage
from kbchat.documents.pdf import read_pdf
from kbchat.search.retrieve import search
from kbchat.settings import Settings
from kbchat.search.embedder import LocalEmbedder
from kbchat.search.base import add_many
from kbchat.search.loaders import open_store


class FakeEmbedder(LocalEmbedder):
    """Another 'model': a different name and dimension, deterministic vectors."""

    def __init__(self, dim=8):
        self.name, self.dim = "fake-model", dim
        self.query_prefix = self.passage_prefix = ""

    def _encode(self, texts):
        rng = np.random.default_rng(0)
        v = rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class Backend:
    """Opens stores of one implementation on one place (a data dir, or a database), as a new process would."""

    def __init__(self, kind: str, tmp_path, pg_url: str | None):
        self.kind = kind
        self.settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)

    def open(self, embedder):
        if self.kind == "postgresql":  # a fresh engine: what another replica has
            from kbchat.records.database import Database
            from kbchat.search.pgstore import PgStore

            return PgStore(Database(self.settings.database_url.get_secret_value()), embedder)
        return open_store(self.settings, embedder)

    def rows(self, kb) -> tuple[int, int, int]:
        """(passage rows, vectors, keyword-index entries) of a collection, active or not."""
        if self.kind == "postgresql":
            with kb._engine.connect() as c:
                n = c.execute(text("SELECT count(*) FROM kb_passages WHERE collection=:c"), {"c": kb.name}).scalar()
                df, ntok = c.execute(text(
                    "SELECT (SELECT COALESCE(sum(df), 0) FROM kb_terms WHERE collection=:c), "
                    "(SELECT COALESCE(sum(cardinality(terms)), 0) FROM kb_passages WHERE collection=:c)"),
                    {"c": kb.name}).one()
                stats = c.execute(text("SELECT n_passages FROM kb_collections WHERE name=:c"), {"c": kb.name}).scalar()
                # postings of every document not deleted (a deleted one's runs in merged rows are dead weight
                # until the next merge: kbchat.search.pgpostings)
                postings = c.execute(text(
                    "SELECT COALESCE(sum(u.z / 16), 0) FROM kb_postings p, unnest(COALESCE(p.docs, ARRAY[p.doc_hash]), "
                    "COALESCE(p.sizes, ARRAY[octet_length(p.post)])) AS u(d, z) WHERE p.collection=:c AND u.d NOT IN "
                    "(SELECT doc_hash FROM kb_dead WHERE collection=:c)"), {"c": kb.name}).scalar()
            # the BM25 statistics and the postings follow every write and delete
            assert df == ntok == postings and stats == n
            return n, n, n
        n = kb._db.execute("SELECT COUNT(*) FROM passages WHERE collection=?", (kb.name,)).fetchone()[0]
        return n, kb._chroma.count(), len(kb._lexical)

    def write_inactive(self, kb, doc) -> None:
        """What a crash half-way through a replacement leaves: passages written, the catalog not flipped."""
        if self.kind == "postgresql":
            with kb._engine.begin() as c:
                c.execute(text("INSERT INTO kb_documents (collection, source_key, source, path, doc_hash, pages, "
                               "passages, origin, added_at, active) VALUES (:c, 'a.pdf', 'a.pdf', 'x', :h, 1, 1, "
                               "'', 't', false)"), {"c": kb.name, "h": doc.doc_hash})
        else:
            with kb._db:
                kb._db.execute("INSERT INTO documents (collection, source_key, source, path, doc_hash, pages, "
                               "passages, origin, added_at, active) VALUES (?,'a.pdf','a.pdf','x',?,1,1,'','t',0)",
                               (kb.name, doc.doc_hash))
        kb._write_passages(doc.passages, None)


@pytest.fixture(params=["embedded", "postgresql"])
def backend(request, tmp_path):
    if request.param == "postgresql":
        return Backend("postgresql", tmp_path, request.getfixturevalue("pg_url"))
    return Backend("embedded", tmp_path, None)


def _texts(coll, query):
    return [p.text for p, _ in coll.lexical(query, 10)]


def test_open_store_chooses_by_database_url(backend, embedder):
    store = open_store(backend.settings, embedder)
    assert type(store).__name__ == ("PgStore" if backend.kind == "postgresql" else "EmbeddedStore")
    store.close()


def test_both_stores_keep_the_protocols(backend, embedder):
    """The contracts in kbchat/search/base.py are what both stores (and the local embedder) offer: every
    method a Protocol names exists with the parameters it declares."""
    import inspect

    from kbchat.search import base

    store = backend.open(embedder)
    try:
        coll = store.collection("proto")
        for obj, proto in ((store, base.Store), (coll, base.Collection), (embedder, base.Embedder)):
            assert isinstance(obj, proto), (type(obj).__name__, proto.__name__)
            for name, member in vars(proto).items():
                if callable(member) and not name.startswith("_"):
                    want = list(inspect.signature(member).parameters)[1:]
                    got = list(inspect.signature(getattr(obj, name)).parameters)
                    assert got[: len(want)] == want, (type(obj).__name__, name, got, want)
    finally:
        store.close()


def test_add_unchanged_replace_duplicate_remove(backend, pdf_factory, embedder):
    store = backend.open(embedder)
    kb = store.collection("kb")
    v1 = pdf_factory("guide.pdf", ["Old fact: the zebra protocol uses port 4242.", "Second page about llamas."])
    r = kb.add(read_pdf(v1), origin="upload")
    assert r.status == "added" and r.doc.passages == 2 and len(kb) == 2
    assert kb.add(read_pdf(v1)).status == "unchanged" and len(kb) == 2

    v2 = pdf_factory("v2/guide.pdf", ["New fact: the walrus protocol uses port 9000."])
    assert kb.add(read_pdf(v2)).status == "replaced"
    assert all("walrus" in t for t in _texts(kb, "zebra protocol port")) and _texts(kb, "zebra protocol port")
    assert not any("zebra" in p.text for p, _ in kb.dense(embedder.encode_query("zebra protocol"), 10))
    assert len(kb) == 1 and [d.source_key for d in kb.documents()] == ["guide.pdf"]
    assert backend.rows(kb) == (1, 1, 1)  # the old version's passages are gone

    r = kb.add(read_pdf(v2), source_key="copy-of-guide.pdf")
    assert r.status == "duplicate" and r.doc.source_key == "guide.pdf"
    assert len(kb.documents()) == 2 and backend.rows(kb) == (1, 1, 1)
    assert kb.remove("guide.pdf") is True
    assert _texts(kb, "walrus")  # still served by the copy
    assert kb.remove("copy-of-guide.pdf") is True and kb.remove("nope") is False
    assert _texts(kb, "walrus") == [] and len(kb) == 0 and backend.rows(kb) == (0, 0, 0)
    store.close()


def test_crash_half_way_is_invisible_and_cleaned_on_open(backend, pdf_factory, embedder):
    store = backend.open(embedder)
    kb = store.collection("My Knowledge Base!")
    doc = read_pdf(pdf_factory("a.pdf", ["Alpha centauri is a star system."]))
    kb.add(doc)
    backend.write_inactive(kb, read_pdf(pdf_factory("b/a.pdf", ["Betelgeuse is a red supergiant."])))
    assert _texts(kb, "betelgeuse") == []
    assert all("Betelgeuse" not in p.text for p, _ in kb.dense(embedder.encode_query("Betelgeuse"), 5))
    assert backend.rows(kb)[0] == 2
    store.close()

    store = backend.open(embedder)
    assert store.names() == ["My Knowledge Base!"]
    kb = store.collection("My Knowledge Base!")
    assert backend.rows(kb) == (1, 1, 1)  # orphans cleaned on open
    assert _texts(kb, "alpha centauri") == ["Alpha centauri is a star system."]
    assert kb.path_of(doc.doc_hash) == str(doc.path)
    store.drop("My Knowledge Base!")
    assert store.names() == []
    store.close()


def test_failed_add_leaves_nothing_visible_and_the_retry_works(backend, pdf_factory, embedder, monkeypatch):
    monkeypatch.setattr("kbchat.search.store.WRITE_BATCH", 4)  # several write steps without embedding hundreds
    monkeypatch.setattr("kbchat.search.pgstore.WRITE_BATCH", 4)
    store = backend.open(embedder)
    kb = store.collection("kb")
    doc = read_pdf(pdf_factory("big.pdf", [f"Page {i} about the quokka habitat." for i in range(12)]))
    calls = {"n": 0}
    real = embedder.encode_passages

    def fail_on_second_batch(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("simulated")
        return real(texts)

    monkeypatch.setattr(embedder, "encode_passages", fail_on_second_batch)
    with pytest.raises(MemoryError):
        kb.add(doc)  # the first passages were written, then the embedder failed
    monkeypatch.setattr(embedder, "encode_passages", real)
    assert backend.rows(kb)[0] == 4
    assert kb.documents() == [] and _texts(kb, "quokka") == []
    assert kb.add(doc).status == "added" and len(kb) == 12 and backend.rows(kb) == (12, 12, 12)
    store.close()


def test_embedder_mismatch(backend, pdf_factory, embedder):
    store = backend.open(embedder)
    store.collection("kb").add(read_pdf(pdf_factory("a.pdf", ["Some text."])))
    store.close()
    other = backend.open(FakeEmbedder())
    with pytest.raises(EmbedderMismatch) as ei:
        other.collection("kb")
    msg = str(ei.value)
    assert "collection 'kb' was built with model bundled:all-MiniLM-L6-v2 (dim 384)" in msg
    assert "the configured embedder is fake-model (dim 8)" in msg and "KBCHAT_EMBEDDING_MODEL" in msg
    fresh = other.collection("fresh")  # a new collection with the other model is fine, in its own dimension
    fresh.add(read_pdf(pdf_factory("b.pdf", ["Eight dimensions here."])))
    assert [p.text for p, _ in fresh.dense(FakeEmbedder().encode_query("x"), 1)] == ["Eight dimensions here."]
    other.close()


def test_fused_search_dense_lexical_and_cjk(backend, tmp_path, pdf_factory, embedder):
    h = "c" * 64
    rows = [Passage("x200.pdf", 1, None, 0, 40, "GPU memory 48 GB, bandwidth 960 GB/s.", h,
                    context="NVIDIA Zephyrion X200 data sheet · Technical Specifications"),
            Passage("x200.pdf", 1, None, 41, 80, "Cats sleep sixteen hours a day.", h, context="")]
    store = backend.open(embedder)
    kb = store.collection("kb")
    kb.add(ParsedPdf("x200.pdf", tmp_path / "x200.pdf", h, 1, rows))
    kb.add(read_pdf(pdf_factory("zh.pdf", ["張量核心加速推理。", "員工每年有二十五天年假。"], fontname="china-t")))
    assert [p.text for p, _ in kb.lexical("Zephyrion", 5)] == [rows[0].text]  # the context is indexed
    hits = search([kb], embedder, "Zephyrion X200 specifications", k=2)
    assert hits[0].text == rows[0].text and hits[0].dense_rank and hits[0].lexical_rank == 1
    assert hits[0].passage.context == rows[0].context and hits[0].path == str(tmp_path / "x200.pdf")
    assert [p.text for p, _ in kb.lexical("张量核心", 5)] == ["張量核心加速推理。"]  # Simplified finds Traditional
    assert _texts(kb, "年假有几天？")[0] == "員工每年有二十五天年假。"
    dense = kb.dense(embedder.encode_query("How long do cats sleep?"), 1)
    assert dense[0][0].text == rows[1].text and 0 < dense[0][1] <= 1
    store.close()


def test_add_many_and_concurrent_writers(backend, pdf_factory, embedder):
    """Threads of one process (the app's uploads), and for PostgreSQL a second store on the same
    database (another replica), adding at once: every document is searchable and the counts add up."""
    stores = [backend.open(embedder)]
    if backend.kind == "postgresql":
        stores.append(backend.open(embedder))
    kbs = [s.collection("kb") for s in stores]
    docs = [read_pdf(pdf_factory(f"f{i}.pdf", [f"File {i} explains the {w} protocol on port {4000 + i}."
                                               for w in ("zebra", "walrus", "okapi")])) for i in range(8)]
    errors = []

    def write(i):
        try:
            kb = kbs[i % len(kbs)]
            list(add_many(kb, [(d.source, d) for d in docs[i::4]], window=3))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for kb in kbs:
        assert len(kb) == 24 and len(kb.documents()) == 8
        hit = kb.dense(embedder.encode_query("walrus protocol port 4005"), 1)[0][0]
        assert hit.source == "f5.pdf"
        assert {p.source for p, _ in kb.lexical("4003", 5)} == {"f3.pdf"}
    assert backend.rows(kbs[0]) == (24, 24, 24)
    for s in stores:
        s.close()


def test_bm25_in_postgresql_ranks_as_tantivy(tmp_path, pg_url, pdf_factory, embedder):
    """PostgreSQL's keyword ranking is BM25 from stored statistics, lengths rounded as tantivy rounds
    them: the same passages in the same order with the same scores as tantivy."""
    from kbchat.search.pgstore import fieldnorm

    assert [fieldnorm(n) for n in (0, 23, 39, 40, 41, 43, 57, 100)] == [0, 23, 39, 40, 40, 42, 56, 96]
    pages = ["The quick brown fox jumps over the lazy dog.", "Dogs are loyal; a dog guards the house.",
             "A long page about foxes and dogs: " + "the fox and the dog met again in the field. " * 12,
             "Foxes hunt at night, the fox is quick.", "Holiday policy: twenty five days of leave a year.",
             "Leave requests go to your manager two weeks ahead.", "The GPU cluster runs nightly jobs."]
    doc = read_pdf(pdf_factory("p.pdf", pages))
    emb = Backend("embedded", tmp_path, None).open(embedder)
    pg = Backend("postgresql", tmp_path, pg_url).open(embedder)
    a, b = emb.collection("kb"), pg.collection("kb")
    a.add(doc)
    b.add(doc)
    for q in ["quick fox", "dog", "days of leave", "leave manager", "GPU jobs at night"]:
        ea, eb = a.lexical_ids(q, 3), b.lexical_ids(q, 3)
        assert [i for i, _ in ea] == [i for i, _ in eb], q
        assert np.allclose([s for _, s in ea], [s for _, s in eb], rtol=1e-3), q  # the same scores
    emb.close()
    pg.close()


def test_postgresql_keyword_search_reads_postings_of_active_documents(tmp_path, pg_url, pdf_factory, embedder):
    """Keyword search sums BM25 over the postings of the question's terms in the active documents: the same
    passages, order and scores as tantivy for every k, a replaced document's passages never found, and its
    postings gone with it."""
    pages = ["The fox report: the fox and the dog.", "Dog dog dog: the dog sleeps, the dog eats, the dog barks.",
             "A cat and the walrus.", "The cat sat on the mat.", "The end of the report.",
             "The zebra report is long: " + "the report and the mat and the cat. " * 8]
    doc = read_pdf(pdf_factory("p.pdf", pages))
    emb = Backend("embedded", tmp_path, None).open(embedder)
    pg = Backend("postgresql", tmp_path, pg_url).open(embedder)
    a, b = emb.collection("kb"), pg.collection("kb")
    a.add(doc)
    b.add(doc)
    for q in ["dog zebra", "zebra", "dog report", "fox zebra mat", "walrus dog", "the cat"]:
        for k in (1, 2, 3, 6):
            ea, eb = a.lexical_ids(q, k), b.lexical_ids(q, k)
            assert [i for i, _ in ea] == [i for i, _ in eb], (q, k)
            assert np.allclose([s for _, s in ea], [s for _, s in eb], rtol=1e-3), (q, k)
    top = b.lexical_ids("dog zebra", 1)[0][0]
    assert "zebra" not in b.passages([top])[top].text  # "dog" x6 outranks the long page's one zebra
    b.add(read_pdf(pdf_factory("p.pdf", ["A page about the zebra crossing."])))  # replaces p.pdf
    (only,) = b.lexical_ids("zebra dog", 5)
    assert b.passages([only[0]])[only[0]].text.startswith("A page about the zebra")
    assert Backend("postgresql", tmp_path, pg_url).rows(b) == (1, 1, 1)
    emb.close()
    pg.close()


def test_postgresql_postings_cache_follows_every_write_of_every_replica(tmp_path, pg_url, pdf_factory, embedder,
                                                                        monkeypatch):
    """Decoded postings are kept per collection version: a second replica's add and delete reach the first
    replica's next question (no stale ranking), the cached ranking equals the one read from the blocks, and a
    cache too small for a question's postings falls back to reading them."""
    from kbchat.search import pgstore

    one = Backend("postgresql", tmp_path, pg_url).open(embedder).collection("cachekb")
    two = Backend("postgresql", tmp_path, pg_url).open(embedder).collection("cachekb")
    one.add(read_pdf(pdf_factory("a.pdf", ["The dog report.", "A walrus and a dog.", "Cat facts."])))
    assert [i for i, _ in two.lexical_ids("dog walrus", 5)][0].endswith("-2-0")  # the walrus page first
    gen = two._postings.gen
    one.add(read_pdf(pdf_factory("b.pdf", ["Walrus walrus walrus: the walrus dog."])))  # another replica writes
    got = two.lexical_ids("dog walrus", 5)
    assert two._postings.gen != gen and len(got) == 3
    assert two.passages([got[0][0]])[got[0][0]].text.startswith("Walrus walrus")

    def uncached(q, k):
        saved, two._postings = two._postings, pgstore.PostingsCache("none", 0, 0)
        two._postings.usable = False
        with monkeypatch.context() as m:  # the version check would start a new cache: keep this one unusable
            m.setattr(pgstore, "PostingsCache", lambda *a: two._postings)
            out = two.lexical_ids(q, k)
        two._postings = saved
        return out

    for q in ("dog walrus", "walrus", "cat dog report"):
        assert two.lexical_ids(q, 5) == uncached(q, 5), q
    assert one.remove(next(d.source_key for d in one.documents() if d.source == "b.pdf"))
    assert len(two.lexical_ids("dog walrus", 5)) == 2
    from kbchat.search import pgpostings

    monkeypatch.setattr(pgpostings, "CACHE_POSTINGS", 2)  # smaller than the question's postings
    two._postings = None
    small = two.lexical_ids("dog walrus cat", 5)
    assert not two._postings.terms  # nothing was kept: the question read its blocks
    assert small == uncached("dog walrus cat", 5) and len(small) == 3


def test_postgresql_store_of_0004_gets_its_postings(tmp_path, pg_server, pdf_factory, embedder):
    """A PostgreSQL store written before the postings (revision 0004: passages with their terms and counts)
    is upgraded with postings backfilled from those passages: keyword search finds them as a new store does."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from kbchat.records.database import MIGRATIONS, Database
    from kbchat.search.pgstore import PgStore
    from tests.conftest import new_pg_database

    pages = ["Holiday policy: twenty five days of leave a year.", "The GPU cluster runs nightly jobs."]
    new_url, old_url = new_pg_database(pg_server), new_pg_database(pg_server)
    new = PgStore(Database(new_url), embedder).collection("kb")
    new.add(read_pdf(pdf_factory("p.pdf", pages)))
    want = new.lexical_ids("leave days", 2)
    tables = ("kb_collections", "kb_documents", "kb_terms", "kb_passages")
    with new._engine.begin() as c:
        data = {t: c.execute(text(f"SELECT * FROM {t}")).mappings().all() for t in tables}
    # The same rows in a database migrated to 0004 only, as that version's store wrote them.
    sa_url = old_url.replace("postgresql://", "postgresql+psycopg://", 1)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sa_url)
    command.upgrade(cfg, "0004")
    eng = sa.create_engine(sa_url)
    with eng.begin() as c:
        assert c.execute(text("SELECT to_regclass('kb_postings')")).scalar() is None
        for t in tables:
            for r in data[t]:
                cols = [k for k in r if k not in ("seq", "next_pno")]  # (next_pno: 0010)
                values = ", ".join("CAST(:embedding AS halfvec)" if k == "embedding" else f":{k}" for k in cols)
                c.execute(text(f'INSERT INTO {t} ({", ".join(f"{chr(34)}{k}{chr(34)}" for k in cols)}) '
                               f"VALUES ({values})"),
                          {k: str(v) if k == "embedding" else v for k, v in r.items()})
    eng.dispose()
    store = PgStore(Database(old_url), embedder)
    kb = store.collection("kb")
    got = kb.lexical_ids("leave days", 2)
    assert got and [i for i, _ in got] == [i for i, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want])
    assert Backend("postgresql", tmp_path, old_url).rows(kb) == (2, 2, 2)
    store.close()


def test_postgresql_merged_postings_rank_as_tantivy_through_deletes_and_rewrites(tmp_path, pg_url, pdf_factory,
                                                                                 embedder, monkeypatch):
    """A term's postings rows are merged as they grow (fanout 2 here, so every level is exercised): a question
    still ranks as tantivy does, cached or read; a removed document's runs inside merged rows are never found
    and never counted, a document written again after its removal counts once, and merges drop dead runs."""
    from kbchat.search import pgpostings

    monkeypatch.setattr(pgpostings, "MERGE_FANOUT", 2)
    emb = Backend("embedded", tmp_path, None).open(embedder)
    pgb = Backend("postgresql", tmp_path, pg_url)
    pg = pgb.open(embedder)
    a, b = emb.collection("mkb"), pg.collection("mkb")
    words = ["fox", "dog", "walrus", "report", "leave", "zebra", "cat"]
    docs = {}
    for i in range(7):
        pad = " ".join(f"w{i}x{j}" for j in range(2 * i))  # lengths differ: no two passages tie
        pages = [f"The {words[i]} report number {i}: the {words[(i + 1) % 7]} and the {words[(i + 2) % 7]}. {pad}",
                 f"A page about the {words[i]} " + f"and the {words[(i + 3) % 7]} " * (i + 1)]
        docs[i] = read_pdf(pdf_factory(f"d{i}.pdf", pages))

    def same(*, removed=()):
        for q in ["fox dog", "the report", "walrus zebra cat", "leave", "number 3 report", "dog"]:
            for k in (1, 3, 8):
                ea, eb = a.lexical_ids(q, k), b.lexical_ids(q, k)
                assert [i for i, _ in ea] == [i for i, _ in eb], (q, k, ea, eb)
                assert np.allclose([s for _, s in ea], [s for _, s in eb], rtol=1e-3), (q, k)
                assert not {pid[:16] for pid, _ in eb} & {docs[r].doc_hash[:16] for r in removed}
            b._postings = None  # the same read from the rows (a fresh cache)
            assert b.lexical_ids(q, 8) == eb

    def rows():
        with b._engine.connect() as c:
            return c.execute(text("SELECT term, level, doc_hash, docs FROM kb_postings WHERE collection='mkb'")).all()

    for i in range(6):
        a.add(docs[i])
        b.add(docs[i])
    assert max(r.level for r in rows()) >= 2  # merged, and merged again
    per_term = Counter(r.term for r in rows())
    assert per_term["report"] <= 3 and per_term["the"] <= 3  # 6 documents: at most one row per level
    same()
    pgb.rows(b)  # the statistics and the live postings agree
    gone = docs[2].doc_hash
    for s in (a, b):
        assert s.remove(next(d.source_key for d in s.documents() if d.source == "d2.pdf"))
    assert any(r.docs and gone in r.docs for r in rows())  # its runs wait inside merged rows ...
    same(removed=[2])
    pgb.rows(b)
    a.add(docs[2])
    b.add(docs[2])  # ... and are taken out when it comes back: counted once
    assert not any(r.docs and r.docs.count(gone) > 1 for r in rows())
    same()
    pgb.rows(b)
    def held(h):
        with b._engine.connect() as c:
            return c.execute(text("SELECT count(*) FROM kb_postings WHERE collection='mkb' AND :h = ANY(docs)"),
                             {"h": h}).scalar()

    for s in (a, b):
        assert s.remove(next(d.source_key for d in s.documents() if d.source == "d4.pdf"))
    before = held(docs[4].doc_hash)
    a.add(docs[6])
    b.add(docs[6])  # the merges this write makes drop d4's runs from the rows they merge
    assert held(docs[4].doc_hash) < before
    same(removed=[4])
    pgb.rows(b)
    # Migration 0010 down (0007's postings, rebuilt from the passages) and up again (one merged row per term):
    # the same ranking.
    from alembic import command
    from alembic.config import Config

    from kbchat.records.database import MIGRATIONS

    want = {q: b.lexical_ids(q, 8) for q in ("fox dog", "the report", "walrus zebra cat")}
    merged_rows = len(rows())
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    command.downgrade(cfg, "0009")
    old_posting = np.dtype([("page", ">i4"), ("start", ">i4"), ("tf", ">i2"), ("lnorm", ">i2")])
    with b._engine.connect() as c:  # each live posting back in its document's row, exactly (0007's format)
        held_now = sorted((term, h, int(r["page"]), int(r["start"]), int(r["tf"])) for term, h, post in c.execute(
            text("SELECT term, doc_hash, post FROM kb_postings WHERE collection='mkb'"))
            for r in np.frombuffer(bytes(post), dtype=old_posting))
        should = sorted((t, h, pg_, st, f) for h, pg_, st, terms, tfs in c.execute(text(
            "SELECT doc_hash, page, start, terms, tfs FROM kb_passages WHERE collection='mkb'"))
            for t, f in zip(terms, tfs))
        n_rows = c.execute(text("SELECT count(*) FROM kb_postings WHERE collection='mkb'")).scalar()
    assert held_now == should and n_rows > merged_rows
    command.upgrade(cfg, "head")
    again = Backend("postgresql", tmp_path, pg_url).open(embedder)
    kb = again.collection("mkb")
    pgb.rows(kb)
    assert {q: kb.lexical_ids(q, 8) for q in want} == want
    assert max(r.level for r in rows()) == 1 and len(rows()) == len({r.term for r in rows()})  # one row a term
    # A removed document is remembered while merged rows hold its runs, forgotten (when a collection opens)
    # once merges dropped them all (two documents holding all its terms make every such row merge again).
    assert kb.remove(next(d.source_key for d in kb.documents() if d.source == "d0.pdf"))
    dead0 = docs[0].doc_hash
    with b._engine.begin() as c:
        assert pgpostings.forget_dead(c, "mkb") == 0 and held(dead0) > 0
    for n in (1, 2):
        kb.add(read_pdf(pdf_factory(f"again{n}.pdf", [p.text + f" again{n}" for p in docs[0].passages])))
    assert held(dead0) == 0
    assert Backend("postgresql", tmp_path, pg_url).open(embedder).collection("mkb")  # opens: forgets
    with b._engine.begin() as c:
        assert c.execute(text("SELECT count(*) FROM kb_dead WHERE collection='mkb'")).scalar() == 0
    pgb.rows(kb)
    again.close()
    emb.close()
    pg.close()


def test_equal_keyword_scores_rank_by_passage_id_in_both_stores(tmp_path, pg_url, embedder):
    """Passages with the same words score the same: both stores order them by passage id (tantivy by where they
    sit in its segments), also when the tie is longer than what is asked for and the search's first read."""
    import hashlib

    rng = np.random.default_rng(3)
    docs = []
    for d in range(3):
        h = hashlib.sha256(f"tie-{d}".encode()).hexdigest()
        words = ["alpha", "beta", "gamma", "delta"]
        ps = [Passage(source=f"t{d}.pdf", page=1 + i, page_label=None, start=0, end=30,
                      text=" ".join(words[i % 4:] + words[:i % 4]), doc_hash=h) for i in range(10)]
        ps.append(Passage(source=f"t{d}.pdf", page=20, page_label=None, start=0, end=30,
                          text="alpha stands alone here with many other words around it", doc_hash=h))
        docs.append(ParsedPdf(source=f"t{d}.pdf", path=tmp_path / f"t{d}.pdf", doc_hash=h, pages=20, passages=ps))
    docs.sort(key=lambda d: d.doc_hash, reverse=True)  # written in the reverse of id order
    tied = sorted(p.id for d in docs for p in d.passages if "many" not in p.text)
    got = {}
    for kind in ("embedded", "postgresql"):
        store = Backend(kind, tmp_path, pg_url if kind == "postgresql" else None).open(embedder)
        coll = store.collection("ties")
        for d in docs:
            v = rng.normal(size=(len(d.passages), embedder.dim)).astype(np.float32)
            coll.add(d, vectors=v / np.linalg.norm(v, axis=1, keepdims=True))
        got[kind] = {k: coll.lexical_ids("alpha beta", k) for k in (5, 29, 31)}
        store.close()
    for k in (5, 29, 31):
        e, p = got["embedded"][k], got["postgresql"][k]
        assert [i for i, _ in e] == [i for i, _ in p], k
        assert [i for i, _ in e][:30] == tied[:min(k, 30)], k  # the 30 tied passages first, smallest id first
    assert len({round(s, 4) for _, s in got["embedded"][29]}) == 1  # one tie, cut by k


def test_small_indexes_are_searched_exactly_and_alike_in_both_stores(tmp_path, pg_url, embedder, monkeypatch):
    """Up to EXACT_BELOW vectors, dense search reads every vector (half precision, as PostgreSQL stores them):
    both stores return the true nearest passages with the same scores, equal vectors in id order; a write of
    another process (replica) is seen by the next search; above the limit the HNSW index answers."""
    import hashlib

    import kbchat.search.pgstore as pgstore_mod
    import kbchat.search.store as store_mod

    rng = np.random.default_rng(7)
    centre = rng.normal(size=embedder.dim)

    def doc(n: int, tag: str):
        h = hashlib.sha256(tag.encode()).hexdigest()
        ps = [Passage(source=f"{tag}.pdf", page=1 + i, page_label=None, start=0, end=10, text=f"passage {tag} {i}",
                      doc_hash=h) for i in range(n)]
        v = centre + rng.normal(scale=0.8, size=(n, embedder.dim))  # one cluster: hard for an approximate index
        v[1] = v[0]  # two equal vectors: a tie
        return ParsedPdf(source=f"{tag}.pdf", path=tmp_path / f"{tag}.pdf", doc_hash=h, pages=n,
                         passages=ps), (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    docs = [doc(120, f"d{i}") for i in range(3)]
    q = centre + rng.normal(scale=0.5, size=embedder.dim)

    def truth(pairs, k):
        ids = [p.id for d, _ in pairs for p in d.passages]
        m = np.round(np.concatenate([v for _, v in pairs]), 5).astype(np.float16).astype(np.float32)
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        sc = np.round(m @ (q / np.linalg.norm(q)).astype(np.float32), 6)
        return sorted(zip(ids, sc.tolist()), key=lambda x: (-x[1], x[0]))[:k]

    got = {}
    for kind in ("embedded", "postgresql"):
        b = Backend(kind, tmp_path / kind, pg_url if kind == "postgresql" else None)
        one, other = b.open(embedder), b.open(embedder)  # two processes (replicas) on the same place
        coll = one.collection("exact")
        for d, v in docs[:2]:
            coll.add(d, vectors=v)
        got[kind] = coll.dense_ids(q, 40)
        assert [i for i, _ in got[kind]] == [i for i, _ in truth(docs[:2], 40)], kind
        diff = np.abs(np.array([s for _, s in got[kind]]) - [s for _, s in truth(docs[:2], 40)])
        assert diff.max() < 2e-6, (kind, diff.max(), diff.argmax())  # one unit of the 6 decimals
        other.collection("exact").add(docs[2][0], vectors=docs[2][1])  # written by the other one
        assert [i for i, _ in coll.dense_ids(q, 40)] == [i for i, _ in truth(docs, 40)], kind
        assert coll.remove(docs[0][0].source)
        assert [i for i, _ in coll.dense_ids(q, 40)] == [i for i, _ in truth(docs[1:], 40)], kind
        # the other one removes a document and adds one of the same size, no search between (the removed
        # document's catalog row id comes back to the new one)
        d4 = doc(120, "d4")
        assert other.collection("exact").remove(docs[2][0].source)
        other.collection("exact").add(d4[0], vectors=d4[1])
        assert [i for i, _ in coll.dense_ids(q, 40)] == [i for i, _ in truth([docs[1], d4], 40)], kind
        # small changes are read incrementally: only the new vectors, removed ones masked
        d5 = doc(10, "d5")
        other.collection("exact").add(d5[0], vectors=d5[1])
        assert [i for i, _ in coll.dense_ids(q, 40)] == [i for i, _ in truth([docs[1], d4, d5], 40)], kind
        assert other.collection("exact").remove(d5[0].source)
        assert [i for i, _ in coll.dense_ids(q, 40)] == [i for i, _ in truth([docs[1], d4], 40)], kind
        (exact,) = [v for _, v in coll._exact_cache.values() if v is not None]
        assert len(exact.ids) == 250 and int(exact.alive.sum()) == 240, kind
        monkeypatch.setattr(store_mod if kind == "embedded" else pgstore_mod, "EXACT_BELOW", 100)
        other.collection("exact").add(doc(5, "d3")[0], vectors=doc(5, "d3")[1])  # a new version, now too large
        approx = coll.dense_ids(q, 40)
        assert len(approx) == 40 and all(i.split("-")[0] not in (docs[0][0].doc_hash[:16], docs[2][0].doc_hash[:16])
                                         for i, _ in approx)
        assert all(v is None for _, v in coll._exact_cache.values())  # the HNSW index answered
        monkeypatch.undo()
        one.close()
        other.close()
    assert [i for i, _ in got["embedded"]] == [i for i, _ in got["postgresql"]]

"""Store / Collection with the real embedder, Chroma, tantivy and the SQLite catalog."""

import numpy as np
import pytest

from kbchat.errors import EmbedderMismatch
from kbchat.ingest import read_pdf
from kbchat.settings import Settings
from kbchat.store import Embedder, Store, chroma_name, load_embedder


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder, loaded once per session."""
    return load_embedder(Settings())


class FakeEmbedder(Embedder):
    """Another 'model': a different name and dimension, deterministic vectors."""

    def __init__(self, dim=8):
        self.name, self.dim = "fake-model", dim
        self.query_prefix = self.passage_prefix = ""

    def _encode(self, texts):
        rng = np.random.default_rng(0)
        v = rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embedder(embedder):
    v = embedder.encode_passages(["GPU memory bandwidth", "cats and dogs"])
    assert v.shape == (2, embedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    q = embedder.encode_query("GPU memory")
    assert q.shape == (embedder.dim,)
    assert load_embedder(Settings()) is embedder


def _texts(coll, query):
    return [p.text for p, _ in coll.lexical(query, 10)]


def test_add_unchanged_replace_duplicate_remove(tmp_path, pdf_factory, embedder):
    store = Store(tmp_path / "data", embedder)
    kb = store.collection("kb")
    v1 = pdf_factory("guide.pdf", ["Old fact: the zebra protocol uses port 4242.", "Second page about llamas."])
    r = kb.add(read_pdf(v1), origin="upload")
    assert r.status == "added" and r.doc.passages == 2 and len(kb) == 2
    assert kb.add(read_pdf(v1)).status == "unchanged"
    assert len(kb) == 2

    v2 = pdf_factory("v2/guide.pdf", ["New fact: the walrus protocol uses port 9000."])
    r = kb.add(read_pdf(v2))
    assert r.status == "replaced"
    assert _texts(kb, "zebra protocol port") and all("walrus" in t for t in _texts(kb, "zebra protocol port"))
    assert not any("zebra" in p.text for p, _ in kb.dense(embedder.encode_query("zebra protocol"), 10))
    assert any("walrus" in t for t in _texts(kb, "walrus"))
    assert len(kb) == 1 and [d.source_key for d in kb.documents()] == ["guide.pdf"]
    assert kb._chroma.count() == 1 and len(kb._lexical) == 1  # old passages cleaned up

    r = kb.add(read_pdf(v2), source_key="copy-of-guide.pdf")
    assert r.status == "duplicate"
    assert len(kb.documents()) == 2 and kb._chroma.count() == 1
    assert kb.remove("guide.pdf") is True
    assert _texts(kb, "walrus")  # still served by the copy
    assert kb.remove("copy-of-guide.pdf") is True and kb.remove("nope") is False
    assert _texts(kb, "walrus") == [] and len(kb) == 0 and kb._chroma.count() == 0
    store.close()


def test_reopen_and_orphans_invisible(tmp_path, pdf_factory, embedder):
    data = tmp_path / "data"
    store = Store(data, embedder)
    kb = store.collection("My Knowledge Base!")
    doc = read_pdf(pdf_factory("a.pdf", ["Alpha centauri is a star system."]))
    kb.add(doc)
    # simulate a crash half-way through a replacement: new passages written, catalog not flipped
    doc2 = read_pdf(pdf_factory("b/a.pdf", ["Betelgeuse is a red supergiant."]))
    with kb._db:
        kb._db.execute(
            "INSERT INTO documents (collection, source_key, source, path, doc_hash, pages, passages, origin, "
            "added_at, active) VALUES ('My Knowledge Base!','a.pdf','a.pdf','x',?,1,1,'','t',0)",
            (doc2.doc_hash,),
        )
    kb._write_passages(doc2.passages, None)
    assert _texts(kb, "betelgeuse") == []
    assert all("Betelgeuse" not in p.text for p, _ in kb.dense(embedder.encode_query("Betelgeuse"), 5))
    store.close()

    store = Store(data, embedder)
    assert store.names() == ["My Knowledge Base!"]
    kb = store.collection("My Knowledge Base!")
    assert kb._chroma.count() == 1 and len(kb._lexical) == 1  # orphans cleaned on open
    assert kb._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0] == 1  # their texts too
    assert _texts(kb, "alpha centauri") == ["Alpha centauri is a star system."]
    assert kb.path_of(doc.doc_hash) == str(doc.path)
    store.drop("My Knowledge Base!")
    assert store.names() == []
    assert store._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0] == 0
    store.close()


def test_failed_add_leaves_nothing_visible_and_the_retry_works(tmp_path, pdf_factory, embedder, monkeypatch):
    store = Store(tmp_path / "data", embedder)
    kb = store.collection("kb")
    doc = read_pdf(pdf_factory("big.pdf", [f"Page {i} about the quokka habitat." for i in range(300)]))
    calls = {"n": 0}
    real = embedder.encode_passages

    def fail_on_second_batch(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("simulated")
        return real(texts)

    monkeypatch.setattr(embedder, "encode_passages", fail_on_second_batch)
    with pytest.raises(MemoryError):
        kb.add(doc)  # the first 256 passages were written, then the embedder failed
    monkeypatch.undo()
    assert kb.documents() == [] and _texts(kb, "quokka") == []
    r = kb.add(doc)  # the retry clears the leftovers of the failed attempt first
    assert r.status == "added" and len(kb) == 300 and kb._chroma.count() == 300
    assert kb._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0] == 300
    store.close()


def test_texts_of_a_data_dir_from_before_the_catalog_held_them(tmp_path, pdf_factory, embedder):
    """Earlier versions stored texts only in Chroma: they are still read from there."""
    store = Store(tmp_path / "data", embedder)
    kb = store.collection("kb")
    doc = read_pdf(pdf_factory("old.pdf", ["The okapi lives in the Ituri rainforest."]))
    kb.add(doc)
    p = doc.passages[0]
    vec = kb._chroma.get(ids=[p.id], include=["embeddings"])["embeddings"]
    kb._chroma.update(ids=[p.id], embeddings=vec, documents=[p.text], metadatas=[{
        "source": p.source, "page": p.page, "page_label": "", "start": p.start, "end": p.end,
        "doc_hash": p.doc_hash}])
    with kb._db:
        kb._db.execute("DELETE FROM passages")
    assert [x.text for x, _ in kb.lexical("okapi", 5)] == [p.text]
    assert [x.text for x, _ in kb.dense(embedder.encode_query("okapi rainforest"), 5)] == [p.text]
    store.close()


def test_embedder_mismatch(tmp_path, pdf_factory, embedder):
    data = tmp_path / "data"
    store = Store(data, embedder)
    store.collection("kb").add(read_pdf(pdf_factory("a.pdf", ["Some text."])))
    store.close()
    other = Store(data, FakeEmbedder())
    with pytest.raises(EmbedderMismatch) as ei:
        other.collection("kb")
    msg = str(ei.value)
    assert "collection 'kb' was built with model bundled:all-MiniLM-L6-v2 (dim 384)" in msg
    assert "the configured embedder is fake-model (dim 8)" in msg
    assert "KBCHAT_EMBEDDING_MODEL" in msg
    other.collection("fresh")  # a new collection with the other model is fine
    other.close()


def test_chroma_name():
    for name in ["kb", "knowledge", "My KB / 中文", "a" * 100, "..x..", "user:alice@example.com"]:
        c = chroma_name(name)
        assert 3 <= len(c) <= 63 and c[0].isalnum() and c[-1].isalnum(), c
        assert all(ch.isalnum() and ch.isascii() or ch in "._-" for ch in c)
    assert chroma_name("knowledge") == "knowledge"
    assert chroma_name("a/b") != chroma_name("a_b")


def test_questions_go_through_onnx_and_get_the_torch_vectors():
    """The ONNX query backend (exported offline, here) gives torch's vectors."""
    embedder = load_embedder(Settings(query_backend="onnx"))
    assert embedder.query_backend == "onnx"
    assert embedder._query_encoder() is not None
    qs = ["What is the memory bandwidth of the A100 80GB?", "企業內部知識庫如何引用頁碼？",
          "社内文書の検索方法", "한국어 질문입니다", "GPU " * 600]  # the last one is truncated at 256 pieces
    for q, ref in zip(qs, embedder._encode(qs)):
        assert np.abs(embedder.encode_query(q) - ref).max() < 1e-4


def test_onnx_query_encoder_is_cached_and_falls_back_to_torch(tmp_path, monkeypatch, caplog):
    import logging

    from kbchat.store import OnnxQueryEncoder

    s = Settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models")

    def make():
        return Embedder(s.embedder_path(), name=s.embedding_model, query_backend="onnx",
                        cache_dir=s.model_cache_path())

    first = make()
    first.encode_query("hello")
    cached = list((tmp_path / "models").glob("query-*.onnx"))
    assert len(cached) == 1 and cached[0].stat().st_size > 1_000_000

    def no_export(cls, emb):
        raise RuntimeError("export not possible here")

    monkeypatch.setattr(OnnxQueryEncoder, "export", classmethod(no_export))
    second = make()  # a new process would do this: the cached graph is used, nothing is exported
    assert second._query_encoder() is not None

    cached[0].write_bytes(b"not an onnx graph")  # damaged cache, and no export possible
    third = make()
    with caplog.at_level(logging.WARNING, logger="kbchat.store"):
        v = third.encode_query("GPU memory")
    assert third._query_encoder() is None
    assert "ONNX query encoder unavailable" in caplog.text and "export not possible here" in caplog.text
    assert np.abs(v - third._encode(["GPU memory"])[0]).max() < 1e-6


def test_passages_are_embedded_in_token_length_batches_with_unchanged_vectors(embedder):
    """Batches group texts of similar token length; every text keeps its own vector, in input order."""
    from kbchat.store import length_batches, token_lengths

    texts = ["GPU", "企業內部知識庫如何引用來源的頁碼？" * 12, "memory bandwidth " * 40, "A100 80GB",
             "社内文書の検索方法" * 20, "short", "NVLink " * 150]
    lengths = token_lengths(embedder.model, texts)
    assert max(lengths) == embedder.model.max_seq_length  # the long ones are truncated, as the model does
    batches = length_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)
    got = embedder.encode_passages(texts)
    want = np.stack([embedder.model.encode([t], normalize_embeddings=True)[0] for t in texts])
    assert np.abs(got - want).max() < 1e-4


def test_add_many_embeds_several_files_per_call_and_skips_unchanged(tmp_path, pdf_factory, embedder):
    from kbchat.errors import IngestError
    from kbchat.store import add_many

    calls = []

    class Counting(Embedder):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)

        def encode_passages(self, texts):
            calls.append(len(texts))
            return super().encode_passages(texts)

    store = Store(tmp_path / "data", Counting(embedder))
    kb = store.collection("kb")
    docs = [read_pdf(pdf_factory(f"f{i}.pdf", [f"File {i} explains the {w} protocol on port {4000 + i}."
                                               for w in ("zebra", "walrus")]))
            for i in range(5)]
    broken = IngestError("bad.pdf", "not a PDF")
    big = read_pdf(pdf_factory("big.pdf", [f"Big page {n} about the yak protocol." for n in range(4)]))
    items = ([(d.source, d) for d in docs[:2]] + [("bad.pdf", broken)] + [(d.source, d) for d in docs[2:]]
             + [("big.pdf", big)])
    out = list(add_many(kb, items, origin="cli", window=4, alone=4))
    assert [k for k, _, _ in out] == ["f0.pdf", "f1.pdf", "bad.pdf", "f2.pdf", "f3.pdf", "f4.pdf", "big.pdf"]
    assert out[2][2] is broken
    assert [r.status for k, _, r in out if k != "bad.pdf"] == ["added"] * 6
    # two small files (4 passages) per call, not one call per file; a file of `alone` passages or
    # more is embedded by add() itself, between its writes
    assert calls == [4, 4, 2, 4]
    assert len(kb) == 14 and kb._chroma.count() == 14
    hit = kb.dense(embedder.encode_query("walrus protocol port 4003"), 1)[0][0]
    assert hit.source == "f3.pdf" and "4003" in hit.text  # each file got its own vectors

    with pytest.raises(ValueError, match="1 vectors for 2 passages"):  # never stored half-embedded
        kb.add(docs[0], source_key="mismatch.pdf", vectors=np.zeros((1, embedder.dim), dtype=np.float32))
    assert "mismatch.pdf" not in [d.source_key for d in kb.documents()]

    calls.clear()
    again = list(add_many(kb, [(d.source, d) for d in docs + [big]] + [("f0-copy.pdf", docs[0])],
                          window=4, alone=4))
    assert [r.status for _, _, r in again] == ["unchanged"] * 6 + ["duplicate"]
    assert calls == []  # nothing embedded twice
    store.close()


def test_context_seen_by_both_retrievers_not_shown_as_text(tmp_path, embedder):
    from kbchat.ingest import ParsedPdf, Passage
    from kbchat.retrieve import search

    h = "c" * 64
    rows = [Passage("x200.pdf", 1, None, 0, 40, "GPU memory 48 GB, bandwidth 960 GB/s.", h,
                    context="NVIDIA Zephyrion X200 data sheet · Technical Specifications"),
            Passage("x200.pdf", 1, None, 41, 80, "Cats sleep sixteen hours a day.", h, context="")]
    store = Store(tmp_path / "data", embedder)
    kb = store.collection("kb")
    kb.add(ParsedPdf("x200.pdf", tmp_path / "x200.pdf", h, 1, rows))
    assert [p.text for p, _ in kb.lexical("Zephyrion", 5)] == [rows[0].text]  # the title is indexed
    hits = search([kb], embedder, "Zephyrion X200 specifications", k=2)
    assert hits[0].text == rows[0].text and "Zephyrion" not in hits[0].text
    assert hits[0].passage.context == rows[0].context  # kept in the catalog for the prompt
    store.close()


def test_catalog_and_keyword_index_of_an_older_kbchat_upgraded(tmp_path, embedder, pdf_factory):
    import sqlite3

    data = tmp_path / "data"
    store = Store(data, embedder)
    kb = store.collection("kb")
    kb.add(read_pdf(pdf_factory("zh.pdf", ["張量核心加速推理。"], fontname="china-t")))
    store.close()
    # as an older kbchat left them: no context column, a keyword index of character bigrams
    con = sqlite3.connect(data / "catalog.sqlite")
    con.execute("ALTER TABLE passages DROP COLUMN context")
    con.commit()
    con.close()
    lex = next((data / "lexical").iterdir())
    (lex / "kbchat-analyzer").unlink()

    again = Store(data, embedder)
    kb = again.collection("kb")
    cols = [r[1] for r in again._db.execute("PRAGMA table_info(passages)")]
    assert "context" in cols
    assert [p.text for p, _ in kb.lexical("张量核心", 5)] == ["張量核心加速推理。"]
    assert (lex / "kbchat-analyzer").read_text().strip() == "2"
    again.close()

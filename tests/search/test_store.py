"""The embedded Store's own cases (old data dirs, Chroma names, the embedder); the contract both store
implementations keep is in tests/search/test_store_contract.py."""

import numpy as np
import pytest

from kbchat.documents.pdf import read_pdf
from kbchat.settings import Settings
from kbchat.search.embedder import LocalEmbedder
from kbchat.search.store import EmbeddedStore, chroma_name
from kbchat.search.loaders import load_embedder


def test_embedder(embedder):
    v = embedder.encode_passages(["GPU memory bandwidth", "cats and dogs"])
    assert v.shape == (2, embedder.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    q = embedder.encode_query("GPU memory")
    assert q.shape == (embedder.dim,)
    assert load_embedder(Settings()) is embedder


def test_texts_of_a_data_dir_from_before_the_catalog_held_them(tmp_path, pdf_factory, embedder):
    """Earlier versions stored texts only in Chroma: they are still read from there."""
    store = EmbeddedStore(tmp_path / "data", embedder)
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

    from kbchat.search.embedder import OnnxQueryEncoder

    s = Settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models")

    def make():
        return LocalEmbedder(s.embedder_path(), name=s.embedding_model, query_backend="onnx",
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
    from kbchat.search.embedder import length_batches, token_lengths

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


def test_add_many_commits_the_keyword_index_once_per_window_and_a_crash_before_it_rebuilds(tmp_path, pdf_factory,
                                                                                        embedder, monkeypatch):
    """A window of files reaches the keyword index in one commit (one writer taken), every file searchable by
    keyword after it; a crash before the commit (the pending marker left) makes the next opening rebuild the
    index from the catalog, so no active passage is missing from keyword search."""
    from kbchat.search import lexical
    from kbchat.search.base import add_many

    taken = []
    real_write = lexical.LexicalIndex._write
    monkeypatch.setattr(lexical.LexicalIndex, "_write", lambda self: taken.append(1) or real_write(self))
    store = EmbeddedStore(tmp_path / "data", embedder)
    kb = store.collection("kb")
    docs = [read_pdf(pdf_factory(f"w{i}.pdf", [f"Window file {i} names the okapi{i} gateway."])) for i in range(4)]
    taken.clear()
    out = list(add_many(kb, [(d.source, d) for d in docs], window=1024))
    assert [r.status for _, _, r in out] == ["added"] * 4
    assert len(taken) == 1  # one writer, one commit, for the four files
    for i in range(4):
        assert [p.source for p, _ in kb.lexical(f"okapi{i}", 3)] == [f"w{i}.pdf"]
    assert not (kb._lexical.path / lexical._PENDING).exists()

    # A crash inside a window: the writer dropped without its commit, the marker left behind.
    late = read_pdf(pdf_factory("late.pdf", ["The late file names the quokka gateway."]))
    lex = kb._lexical
    lex._win, lex._depth = lex._write(), 1  # what window() sets up on entering ...
    (lex.path / lexical._PENDING).write_text("1\n", encoding="utf-8")
    kb.add(late)
    writer, lex._win, lex._depth = lex._win, None, 0
    lex._release(writer)  # ... and the writer gone without its commit, as in a killed process
    assert kb.lexical("quokka", 3) == []  # the catalog has it active, the keyword index does not
    store.close()
    again = EmbeddedStore(tmp_path / "data", embedder).collection("kb")
    assert [p.source for p, _ in again.lexical("quokka", 3)] == ["late.pdf"]  # rebuilt when opened
    assert [p.source for p, _ in again.lexical("okapi2", 3)] == ["w2.pdf"]
    assert not (again._lexical.path / lexical._PENDING).exists()


def test_add_many_embeds_several_files_per_call_and_skips_unchanged(tmp_path, pdf_factory, embedder):
    from kbchat.errors import IngestError
    from kbchat.search.base import add_many

    calls = []

    class Counting(LocalEmbedder):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)

        def encode_passages(self, texts):
            calls.append(len(texts))
            return super().encode_passages(texts)

    store = EmbeddedStore(tmp_path / "data", Counting(embedder))
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


def test_add_many_reads_the_next_files_while_a_window_is_embedded(tmp_path, pdf_factory, embedder):
    """The files after a full window are read while its passages are embedded on another thread: the
    reader below waits, while asked for the next file, until the embedding of the previous window has
    begun (it would wait forever if reading and embedding took turns), and the results keep their order."""
    import threading

    from kbchat.search.base import add_many

    began, may_finish = threading.Event(), threading.Event()

    class Gated(LocalEmbedder):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)

        def encode_passages(self, texts):
            began.set()
            assert may_finish.wait(30)
            return super().encode_passages(texts)

    store = EmbeddedStore(tmp_path / "data", Gated(embedder))
    kb = store.collection("kb")
    docs = [read_pdf(pdf_factory(f"g{i}.pdf", [f"Gate {i} opens on port {5000 + i}.", f"Gate {i} closes."]))
            for i in range(4)]
    seen = []

    def reader():
        for i, d in enumerate(docs):
            if i == 2:  # the first window (g0, g1) is full: its embedding runs while g2 is read
                seen.append(began.wait(30))
                may_finish.set()
            yield d.source, d

    out = list(add_many(kb, reader(), window=4, alone=10))
    assert seen == [True]
    assert [k for k, _, _ in out] == ["g0.pdf", "g1.pdf", "g2.pdf", "g3.pdf"]
    assert [r.status for _, _, r in out] == ["added"] * 4 and len(kb) == 8
    store.close()


def test_catalog_and_keyword_index_of_an_older_kbchat_upgraded(tmp_path, embedder, pdf_factory):
    import sqlite3

    data = tmp_path / "data"
    store = EmbeddedStore(data, embedder)
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

    again = EmbeddedStore(data, embedder)
    kb = again.collection("kb")
    cols = [r[1] for r in again._db.execute("PRAGMA table_info(passages)")]
    assert "context" in cols
    assert [p.text for p, _ in kb.lexical("张量核心", 5)] == ["張量核心加速推理。"]
    assert (lex / "kbchat-analyzer").read_text().strip() == "2"
    again.close()

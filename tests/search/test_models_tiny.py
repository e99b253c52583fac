"""Configurable models (reranker, e5-style prefixed embedders) tested with tiny models built here:
no model hub, no download; the tokenizer comes from the bundled MiniLM folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kbchat.settings import Settings, bundled_embedder_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _tiny_bert_config(**kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=256, **kw)


def _copy_tokenizer(dst):
    for name in TOKENIZER_FILES:
        src = bundled_embedder_path() / name
        if src.exists():
            shutil.copy(src, dst / name)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-ce")
    BertForSequenceClassification(_tiny_bert_config(num_labels=1)).save_pretrained(path)
    _copy_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory):
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel

    torch.manual_seed(0)
    bert = tmp_path_factory.mktemp("tiny-bert")
    BertModel(_tiny_bert_config()).save_pretrained(bert)
    _copy_tokenizer(bert)
    word = models.Transformer(str(bert), max_seq_length=128)
    st = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")])
    out = tmp_path_factory.mktemp("tiny-e5")
    st.save(str(out))
    return out


def test_reranker_loads_lazily_and_reorders_by_cross_encoder(tiny_cross_encoder, tmp_path, pdf_factory):
    from sentence_transformers import CrossEncoder

    from kbchat.documents.pdf import read_pdf
    from kbchat.search.embedder import CrossEncoderReranker
    from kbchat.search.retrieve import search
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.loaders import load_embedder

    settings = Settings(data_dir=tmp_path / "data")
    store = EmbeddedStore(settings.data_dir, load_embedder(settings))
    coll = store.collection("knowledge")
    coll.add(read_pdf(pdf_factory("gpus.pdf", [
        "The A100 has 80 GB of HBM2e memory.", "The T400 has 4 GB of GDDR6 memory.",
        "The L4 has 24 GB of GDDR6 memory.", "Memory bandwidth of the A100 is 2,039 GB/s."])))
    rr = CrossEncoderReranker(str(tiny_cross_encoder))
    assert rr._model is None  # nothing loaded until used
    q = "How much memory does the GPU have?"
    hits = search([coll], store.embedder, q, k=3, candidate_k=10, reranker=rr)
    assert len(hits) == 3 and all(h.rerank_score is not None for h in hits)
    expected = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([(q, h.text) for h in hits])
    assert [h.rerank_score for h in hits] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-4)
    store.close()


def test_reranker_that_cannot_load_gives_config_error(tmp_path):
    from kbchat.errors import ConfigError
    from kbchat.search.embedder import CrossEncoderReranker

    with pytest.raises(ConfigError, match="KBCHAT_RERANKER_MODEL"):
        CrossEncoderReranker(str(tmp_path / "missing")).rerank("q", [object()])


def test_e5_style_prefixes_and_embedder_mismatch(tiny_e5, tmp_path, pdf_factory):
    from sentence_transformers import SentenceTransformer

    from kbchat.errors import EmbedderMismatch
    from kbchat.documents.pdf import read_pdf
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.loaders import load_embedder

    s = Settings(data_dir=tmp_path / "data", embedding_model=str(tiny_e5),
                 embedding_query_prefix="query: ", embedding_passage_prefix="passage: ")
    emb = load_embedder(s)
    assert emb.dim == 32
    raw = SentenceTransformer(str(tiny_e5), device="cpu")
    want_q = raw.encode(["query: zebra port"], normalize_embeddings=True)[0]
    want_p = raw.encode(["passage: zebra port"], normalize_embeddings=True)[0]
    assert np.allclose(emb.encode_query("zebra port"), want_q, atol=1e-5)
    assert emb._query_encoder() is not None  # that question went through the ONNX export of this model
    assert np.allclose(emb.encode_passages(["zebra port"])[0], want_p, atol=1e-5)

    store = EmbeddedStore(s.data_dir, emb)
    store.collection("knowledge").add(read_pdf(pdf_factory("z.pdf", ["The zebra protocol uses port 7777."])))
    store.close()
    # the same data dir opened with the default 384-d MiniLM: refused with a clear message
    other = EmbeddedStore(s.data_dir, load_embedder(Settings(data_dir=s.data_dir)))
    with pytest.raises(EmbedderMismatch, match="knowledge"):
        other.collection("knowledge")
    other.close()

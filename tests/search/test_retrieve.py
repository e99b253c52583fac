"""Hybrid search: RRF fusion, multi-collection search, Hit fields, reranker errors."""

import pytest

from kbchat.errors import ConfigError
from kbchat.evaluate import hits_to_json
from kbchat.documents.pdf import read_pdf
from kbchat.search.embedder import CrossEncoderReranker
from kbchat.search.retrieve import fusion_weights, rrf, search
from kbchat.search.store import EmbeddedStore


def test_rrf_order():
    fused = rrf([(["a", "b", "c"], 1.0), (["c", "b", "d"], 1.0)])
    order = sorted(fused, key=lambda x: -fused[x])
    assert order[0] in ("b", "c") and set(order[:2]) == {"b", "c"}
    assert order[-1] == "d" and fused["a"] > fused["d"] - 1e-12
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 62)
    weighted = rrf([(["a", "b"], 0.1), (["b", "a"], 1.0)])
    assert weighted["b"] > weighted["a"]


def test_fusion_weights_per_language():
    assert fusion_weights("What is the A100 memory bandwidth?") == (0.6, 1.5)
    assert fusion_weights("张量并行的通信开销是多少？") == (0.0, 1.5)  # English-only embedder: BM25 alone
    d, l = fusion_weights("Mixtral 8x7B 和 Llama 2 70B 相比如何？")  # mixed: by CJK share
    assert 0.0 < d < 0.6 and l == 1.5
    assert fusion_weights("张量并行", multilingual=True) == (1.0, 1.5)


def test_search_multi_collection(tmp_path, pdf_factory, embedder):
    store = EmbeddedStore(tmp_path / "data", embedder)
    gpus = store.collection("gpus")
    zoo = store.collection("zoo")
    gpus.add(read_pdf(pdf_factory("gpu.pdf", [
        "The A100 GPU offers 2,039 GB/s of memory bandwidth.",
        "Tensor cores accelerate matrix multiplication.",
    ])))
    zoo.add(read_pdf(pdf_factory("zoo.pdf", [
        "Penguins live in the southern hemisphere.",
        "The giraffe is the tallest land animal.",
    ])))
    zoo.add(read_pdf(pdf_factory("zh.pdf", ["大熊猫主要生活在四川的竹林中。"], fontname="china-s")))

    hits = search([gpus, zoo], embedder, "How much memory bandwidth does the A100 have?", k=3)
    assert hits[0].source == "gpu.pdf" and hits[0].page == 1 and hits[0].collection == "gpus"
    assert hits[0].dense_rank == 1 and hits[0].lexical_rank == 1
    assert hits[0].path and hits[0].path.endswith("gpu.pdf")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.passage.id for h in hits}) == len(hits)

    hits = search([gpus, zoo], embedder, "Which animal is the tallest?", k=2)
    assert hits[0].collection == "zoo" and "giraffe" in hits[0].text

    hits = search([gpus, zoo], embedder, "大熊猫生活在哪里？", k=2)
    assert hits[0].source == "zh.pdf"

    assert search([gpus], embedder, "giraffe", k=5)[0].collection == "gpus"  # only the asked collection
    js = hits_to_json(hits)
    assert set(js[0]) == {"source", "page", "text", "score"}
    store.close()


def test_reranker_missing_model():
    rr = CrossEncoderReranker("/nonexistent/cross-encoder")
    with pytest.raises(ConfigError) as ei:
        rr.rerank("q", [object()])
    assert "KBCHAT_RERANKER_MODEL" in str(ei.value)

"""Embeddings and reranking from model servers (kbchat.remote) against a real HTTP stub on loopback
(tests/stubs/models.py) speaking the NIM, TEI, OpenAI and Cohere shapes; the real EmbeddedStore, search, CLI and core."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from kbchat.errors import EmbedderMismatch, ModelServerError
from kbchat.search.remote import RemoteEmbedder, RemoteReranker, embedding_api, embeddings_url, rerank_url
from kbchat.search.loaders import load_reranker
from kbchat.search.retrieve import search
from kbchat.search.store import EmbeddedStore
from tests.conftest import REPO
from tests.stubs.models import StubModelServer, hashed_vectors

KEY = "sk-test-0123456789-secret"
ZEBRA = ["Zebra networks overview. The zebra protocol is used by the zoo.",
         "The zebra protocol uses port 7777 for all traffic. Heartbeats are sent every 30 seconds.",
         "Giraffe routing tables are refreshed hourly by the savanna daemon."]


@pytest.fixture(scope="module")
def model_server():
    """The hashed-vector model server, one per module (``srv`` resets it for each test)."""
    s = StubModelServer().start()
    yield s
    s.stop()


@pytest.fixture
def srv(model_server):
    model_server.reset("ok", model="stub-embed", dim=64, require_input_type=False, api_key=None,
                       rerank_apis={"nim", "tei", "cohere"}, fail_times=None, slow_seconds=3.0,
                       fail_paths=None)
    return model_server


def _emb(srv, **kw) -> RemoteEmbedder:
    kw.setdefault("backoff", 0.01)
    return RemoteEmbedder(kw.pop("base_url", srv.base_url), kw.pop("model", "stub-embed"), **kw)


# ------------------------------------------------------------------------------------------ embeddings


@pytest.mark.parametrize("api", ["openai", "nim", "tei"])
def test_embedding_shapes_batching_prefixes_and_key(srv, api):
    srv.reset(require_input_type=api == "nim", api_key=KEY)
    emb = _emb(srv, api=api, api_key=KEY, batch_size=32, concurrency=2, query_prefix="query: ",
               passage_prefix="passage: ")
    texts = [f"passage number {i} about zebras" for i in range(70)]
    vecs = emb.encode_passages(texts)
    q = emb.encode_query("which zebra")
    assert emb.dim == 64 and vecs.shape == (70, 64) and vecs.dtype == np.float32 and q.shape == (64,)
    np.testing.assert_allclose(vecs, hashed_vectors(["passage: " + t for t in texts], 64), atol=1e-6)
    np.testing.assert_allclose(q, hashed_vectors(["query: which zebra"], 64)[0], atol=1e-6)
    path = "/embed" if api == "tei" else "/v1/embeddings"
    assert set(srv.paths()) == {path}
    bodies = [b for _, b, _ in srv.requests]
    sizes = [len(b["inputs" if api == "tei" else "input"]) for b in bodies]
    assert sizes[0] == 1 and sorted(sizes[1:4]) == [6, 32, 32] and sizes[4] == 1  # probe, 3 batches, query
    if api == "nim":
        assert [b["input_type"] for b in bodies] == ["query", "passage", "passage", "passage", "query"]
    else:
        assert not any("input_type" in b for b in bodies)
    assert all(h.get("Authorization") == f"Bearer {KEY}" for _, _, h in srv.requests)
    assert KEY not in emb.summary() and KEY not in json.dumps(emb.describe())


def test_api_and_url_detection(srv):
    assert embedding_api("https://integrate.api.nvidia.com/v1", "baai/bge-m3") == "nim"
    assert embedding_api("http://nim:8000/v1", "nvidia/nv-embedqa-e5-v5") == "nim"
    assert embedding_api("http://tei:80/v1", "BAAI/bge-m3") == "openai"
    assert embedding_api("http://tei:80/v1", "x", "tei") == "tei"
    assert embeddings_url("http://tei:80/v1/", "openai") == "http://tei:80/v1/embeddings"
    assert embeddings_url("http://tei:80", "openai") == "http://tei:80/v1/embeddings"
    assert embeddings_url("http://tei:80/v1", "tei") == "http://tei:80/embed"
    assert rerank_url("http://nim:8000/v1", "nim") == "http://nim:8000/v1/ranking"
    assert rerank_url("http://nim:8000", "nim") == "http://nim:8000/v1/ranking"
    assert rerank_url("http://tei:80/v1", "tei") == "http://tei:80/rerank"
    assert rerank_url("http://vllm:8000", "cohere") == "http://vllm:8000/v1/rerank"
    hosted = "https://ai.api.nvidia.com/v1/retrieval/nvidia/nv-rerankqa-mistral-4b-v3/reranking"
    assert rerank_url(hosted, "nim") == hosted and RemoteReranker(hosted).api == "nim"
    # 'auto' meets a server that asks for NIM's input_type: it switches to the nim API and answers
    srv.reset(require_input_type=True)
    emb = _emb(srv)
    assert emb.api == "openai" and emb.encode_query("zebra").shape == (64,) and emb.api == "nim"


def _line(srv, case) -> str:
    """The one line each failure gives."""
    base = srv.base_url
    if case == "down":
        emb = _emb(srv, base_url="http://127.0.0.1:9/v1", retries=1)
    elif case == "key":
        srv.reset(api_key="the-right-key")
        emb = _emb(srv, api_key=KEY)
    elif case == "model":
        emb = _emb(srv, model="no-such-model")
    elif case == "dim":
        emb = _emb(srv, dim=384)
    elif case == "dim-changed":
        emb = _emb(srv)
        emb.dim  # noqa: B018 -- 64 at start-up
        srv.reset("wrongdim")
    elif case == "500":
        srv.reset("500")
        emb = _emb(srv, retries=2)
    elif case == "timeout":
        srv.reset("slow", slow_seconds=2.0)
        emb = _emb(srv, timeout=0.3)
    elif case == "not-json":
        srv.reset("garbage")
        emb = _emb(srv)
    elif case == "no-route":
        emb = _emb(srv, base_url=srv.url + "/v2")
    else:
        raise AssertionError(case)
    with pytest.raises(ModelServerError) as err:
        emb.encode_passages(["the zebra protocol"])
    msg = str(err.value)
    assert "\n" not in msg and KEY not in msg and "Traceback" not in msg
    return msg.replace(base, "BASE").replace(srv.url, "URL")


@pytest.mark.parametrize("case, line", [
    ("down", "embedding server http://127.0.0.1:9/v1 is unreachable (connection refused); start it or check "
             "KBCHAT_EMBEDDING_BASE_URL"),
    ("key", "embedding server BASE refused the API key (HTTP 401); set KBCHAT_EMBEDDING_API_KEY"),
    ("model", "embedding server BASE does not serve model 'no-such-model' (HTTP 404); set KBCHAT_EMBEDDING_MODEL "
              "to a model it serves"),
    ("dim", "embedding server BASE returned vectors of dimension 64 for model 'stub-embed'; expected 384 "
            "(KBCHAT_EMBEDDING_DIM)"),
    ("dim-changed", "embedding server BASE returned vectors of dimension 32 for model 'stub-embed'; expected 64 "
                    "(what it returned at start-up)"),
    ("500", "embedding server BASE failed with HTTP 500 after 3 attempts: Internal error"),
    ("timeout", "embedding server BASE did not answer within 0.3 s (KBCHAT_EMBEDDING_TIMEOUT)"),
    ("not-json", "embedding server BASE answered with something that is not JSON (is it a model server? "
                 "KBCHAT_EMBEDDING_BASE_URL)"),
    ("no-route", "embedding server URL/v2 has no /v2/embeddings endpoint (HTTP 404); check "
                 "KBCHAT_EMBEDDING_BASE_URL"),
])
def test_each_failure_gives_one_line(srv, case, line, caplog):
    caplog.set_level(logging.DEBUG)
    assert _line(srv, case) == line
    assert KEY not in caplog.text


def test_429_and_5xx_are_retried_with_back_off(srv, caplog):
    caplog.set_level(logging.INFO, logger="kbchat.remote")
    srv.reset("429", fail_times=2)
    emb = _emb(srv, retries=3)
    assert emb.encode_query("zebra").shape == (64,)
    assert len(srv.requests) == 4  # probe: 429, 429, 200; then the question
    assert caplog.text.count("answered HTTP 429; retry") == 2
    srv.reset("500", fail_times=1)
    assert _emb(srv, retries=1).encode_passages(["a", "b"]).shape == (2, 64)


def test_a_base_built_with_one_model_refuses_another(srv, settings, pdf_factory):
    pdf = pdf_factory("zebra.pdf", ZEBRA)
    from kbchat.documents.pdf import read_pdf

    store = EmbeddedStore(settings.data_dir, _emb(srv))
    coll = store.collection("kb")
    coll.add(read_pdf(pdf))
    hits = search([coll], store.embedder, "which port does the zebra protocol use", k=2)
    assert hits[0].page == 2 and hits[0].dense_rank == 1  # the stub's vectors carry the words
    store.close()

    srv.reset(model="stub-other")
    with pytest.raises(EmbedderMismatch) as err:
        EmbeddedStore(settings.data_dir, _emb(srv, model="stub-other")).collection("kb")
    assert str(err.value) == ("collection 'kb' was built with model stub-embed (dim 64); the configured embedder "
                              "is stub-other (dim 64). Re-ingest into a new data dir or set "
                              "KBCHAT_EMBEDDING_MODEL back to stub-embed.")
    srv.reset(model="stub-embed", dim=32)  # the same name, another model behind it
    with pytest.raises(EmbedderMismatch) as err:
        EmbeddedStore(settings.data_dir, _emb(srv)).collection("kb")
    assert "(dim 64); the configured embedder is stub-embed (dim 32)" in str(err.value)


# ------------------------------------------------------------------------------------------ reranking


def _hits(srv, settings, pdf_factory):
    from kbchat.documents.pdf import read_pdf

    pages = [f"Filler page {i} about savanna logistics and the zoo budget." for i in range(8)] + ZEBRA
    store = EmbeddedStore(settings.data_dir, _emb(srv))
    coll = store.collection("kb")
    coll.add(read_pdf(pdf_factory("mixed.pdf", pages)))
    return store, coll


@pytest.mark.parametrize("api", ["nim", "tei", "cohere"])
def test_reranker_shapes_and_auto_detection(srv, settings, pdf_factory, api):
    store, coll = _hits(srv, settings, pdf_factory)
    q = "zebra protocol port traffic"
    fused = search([coll], store.embedder, q, k=11, candidate_k=20)
    for setting in (api, "auto"):
        srv.reset(rerank_apis={api})
        rr = RemoteReranker(srv.url, "stub-rerank", api=setting, candidates=7, backoff=0.01)
        hits = search([coll], store.embedder, q, k=3, candidate_k=20, reranker=rr)
        assert len(hits) == 3 and "7777" in hits[0].text and hits[0].rerank_score is not None
        assert hits[0].rerank_score >= hits[1].rerank_score >= hits[2].rerank_score
        rerank_calls = [(p, b) for p, b, _ in srv.requests if p != "/v1/embeddings"]
        path, body = rerank_calls[-1]
        assert path == {"nim": "/v1/ranking", "tei": "/rerank", "cohere": "/v1/rerank"}[api]
        texts = {"nim": lambda b: [p["text"] for p in b["passages"]], "tei": lambda b: b["texts"],
                 "cohere": lambda b: b["documents"]}[api](body)
        assert texts == [h.text for h in fused[:7]]  # the 7 best fused candidates, in fused order
        assert ("model" in body) == (api != "tei")
        assert rr.api == api
        # auto tries nim, cohere, tei in turn until one answers, then keeps it
        tried = len(rerank_calls)
        assert tried == (1 if setting == api else 1 + ["nim", "cohere", "tei"].index(api))
        search([coll], store.embedder, q, k=3, candidate_k=20, reranker=rr)
        assert len([p for p, _, _ in srv.requests if p != "/v1/embeddings"]) == tried + 1
    store.close()


@pytest.mark.parametrize("mode, line", [
    ("down", "reranking skipped, fused order kept: reranking server http://127.0.0.1:9 is unreachable "
             "(connection refused); start it or check KBCHAT_RERANKER_BASE_URL"),
    ("401", "reranking skipped, fused order kept: reranking server URL refused the API key (HTTP 401); set "
            "KBCHAT_RERANKER_API_KEY"),
    ("500", "reranking skipped, fused order kept: reranking server URL failed with HTTP 500 after 2 attempts: "
            "Internal error"),
    ("slow", "reranking skipped, fused order kept: reranking server URL did not answer within 0.3 s "
             "(KBCHAT_RERANKER_TIMEOUT)"),
])
def test_search_answers_in_fused_order_when_the_reranker_fails(srv, settings, pdf_factory, caplog, mode, line):
    store, coll = _hits(srv, settings, pdf_factory)
    q = "zebra protocol port traffic"
    fused = search([coll], store.embedder, q, k=5)
    srv.reset(mode, slow_seconds=2.0, fail_paths={"/v1/ranking"})
    url = "http://127.0.0.1:9" if mode == "down" else srv.url
    rr = RemoteReranker(url, "stub-rerank", api="nim", api_key=KEY, timeout=0.3, retries=1, backoff=0.01)
    caplog.set_level(logging.INFO, logger="kbchat.remote")
    hits = search([coll], store.embedder, q, k=5, reranker=rr)
    assert [h.passage.id for h in hits] == [h.passage.id for h in fused]
    assert all(h.rerank_score is None for h in hits)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].getMessage().replace(srv.url, "URL") == line
    assert KEY not in caplog.text
    store.close()


def test_load_reranker_from_settings(settings):
    assert load_reranker(settings) is None
    local = load_reranker(settings.model_copy(update={"reranker_model": "some/cross-encoder",
                                                      "reranker_candidates": 30}))
    assert type(local).__name__ == "CrossEncoderReranker" and local.candidates == 30 and local._model is None
    remote = load_reranker(settings.model_copy(update={"reranker_base_url": "http://127.0.0.1:9/v1",
                                                       "reranker_model": "nvidia/llama-3.2-nv-rerankqa-1b-v2"}))
    assert isinstance(remote, RemoteReranker) and remote.candidates == 45 and remote.api is None


# ------------------------------------------------------------------------------------------ edges


def _env(srv, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBCHAT_")}
    env.update({
        "PYTHONPATH": str(REPO), "KBCHAT_DATA_DIR": str(tmp_path / "data"),
        "KBCHAT_MODEL_CACHE_DIR": str(tmp_path / "models"),
        "KBCHAT_EMBEDDING_BASE_URL": srv.base_url, "KBCHAT_EMBEDDING_MODEL": "stub-embed",
        "KBCHAT_EMBEDDING_API_KEY": KEY, "KBCHAT_RERANKER_BASE_URL": srv.url, "KBCHAT_RERANKER_API_KEY": KEY,
    })
    return env


# pymupdf 2.0 imports its own layout analyser (an ONNX model, pymupdf.layout) at `import pymupdf`:
# onnxruntime then comes from the PDF reader, not from an embedder; the probe tells the two apart.
_PROBE = ("import atexit, sys\n"
          "HEAVY = ('torch', 'sentence_transformers', 'onnxruntime', 'transformers', 'sklearn')\n"
          "def report():\n"
          "    heavy = [m for m in HEAVY if m in sys.modules]\n"
          "    if 'pymupdf.layout' in sys.modules: heavy.remove('onnxruntime')\n"
          "    print('LOADED', heavy, file=sys.stderr)\n"
          "atexit.register(report)\n"
          "from kbchat.cli import main\n"
          "sys.argv = ['kbchat'] + sys.argv[1:]\n"
          "main()\n")


def test_cli_with_model_servers_never_imports_torch(srv, tmp_path, pdf_factory):
    srv.reset(api_key=KEY)
    pdf = pdf_factory("zebra.pdf", ZEBRA)
    env = _env(srv, tmp_path)
    out = {}
    for cmd in (["ingest", str(pdf)], ["search", "which port does the zebra protocol use", "--json"]):
        r = subprocess.run([sys.executable, "-c", _PROBE, *cmd], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "LOADED []" in r.stderr, r.stderr
        assert KEY not in r.stdout + r.stderr
        out[cmd[0]] = r.stdout
    assert "zebra.pdf: 3 pages" in out["ingest"]
    hits = json.loads(out["search"])
    assert hits[0]["page"] == 2 and "7777" in hits[0]["text"]
    paths = srv.paths()
    assert "/v1/embeddings" in paths and paths[-1] == "/v1/ranking"  # search reranked by the server

    srv.reset("401", api_key=KEY)
    r = subprocess.run([sys.executable, "-c", _PROBE, "search", "zebra"], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == (f"Error: embedding server {srv.base_url} refused the API key (HTTP 401); "
                                        "set KBCHAT_EMBEDDING_API_KEY")


def test_doctor_reports_the_model_servers(srv, settings):
    from kbchat import doctor

    s = settings.model_copy(update={"embedding_base_url": srv.base_url, "embedding_model": "stub-embed",
                                    "reranker_base_url": srv.url, "reranker_model": "stub-rerank"})
    checks = {c["name"]: c for c in doctor.run(s)["checks"]}
    assert checks["embedder"]["status"] == "ok" and "stub-embed from the openai API" in checks["embedder"]["detail"]
    assert checks["reranker"]["status"] == "ok" and "nim API" in checks["reranker"]["detail"]
    down = s.model_copy(update={"reranker_base_url": "http://127.0.0.1:9", "server_retries": 0})
    rr = doctor.check_reranker(down)
    assert rr.status == "fail" and "is unreachable (connection refused)" in rr.detail


# ------------------------------------------------------------------------------------------ the app's core


@pytest.fixture(scope="module")
def real_stub():
    """The model server backed by the real local embedder (retrieval quality is real)."""
    s = StubModelServer(model="minilm-remote", backend="local").start()
    yield s
    s.stop()


@pytest.fixture
def app_core(tmp_path, monkeypatch, real_stub, stub):
    from kbchat.ui import handlers, runtime
    from tests.fixtures.appserver import seed_knowledge

    seed_knowledge(tmp_path / "knowledge")  # the shipped personas name the clinic base
    llm = stub
    real_stub.reset("ok", model="minilm-remote", api_key=KEY, require_input_type=True)
    for k, v in {"KBCHAT_DATA_DIR": tmp_path / "data", "KBCHAT_KNOWLEDGE_DIR": tmp_path / "knowledge",
                 "KBCHAT_PERSONAS_DIR": REPO / "personas", "KBCHAT_LLM_BASE_URL": llm.base_url,
                 "KBCHAT_LLM_MODEL": "stub", "KBCHAT_LLM_TIMEOUT": "5",
                 "KBCHAT_EMBEDDING_BASE_URL": real_stub.base_url, "KBCHAT_EMBEDDING_MODEL": "minilm-remote",
                 "KBCHAT_EMBEDDING_API": "nim", "KBCHAT_EMBEDDING_API_KEY": KEY,
                 "KBCHAT_RERANKER_BASE_URL": real_stub.base_url, "KBCHAT_RERANKER_MODEL": "stub-rerank",
                 "KBCHAT_RERANKER_API_KEY": KEY, "KBCHAT_RERANKER_CANDIDATES": "6"}.items():
        monkeypatch.setenv(k, str(v))
    runtime.reset()
    yield handlers, real_stub
    runtime.reset()


async def test_upload_search_and_answer_through_the_core(app_core, pdf_factory, caplog):
    import uuid

    from chainlit.context import ChainlitContext, context_var
    from chainlit.session import HTTPSession

    from kbchat.search.remote import RemoteEmbedder
    from kbchat.ui import runtime
    from tests.fixtures.handlers import Recorder as _Recorder
    from tests.fixtures.handlers import answers as _answers
    from tests.fixtures.handlers import say as _say
    from tests.fixtures.handlers import upload as _upload

    app, srv = app_core
    session = HTTPSession(id=str(uuid.uuid4()), client_type="webapp")
    session.chat_profile = "general"
    ctx = ChainlitContext(session, emitter=_Recorder.make(session))
    token = context_var.set(ctx)
    try:
        pdf = pdf_factory("zebra.pdf", ZEBRA)
        await app.on_chat_start()
        c = runtime.core()
        assert isinstance(c.embedder, RemoteEmbedder) and isinstance(c.reranker, RemoteReranker)
        await _say(app, "What port does the zebra protocol use?", [await _upload(pdf)])
        final = _answers(ctx.emitter)[-1]["output"]
        assert "According to" in final and "zebra.pdf, page 2" in final
        bodies = [(p, b) for p, b, _ in srv.requests]
        emb = [b for p, b in bodies if p == "/v1/embeddings"]
        assert {b["input_type"] for b in emb} == {"query", "passage"}
        assert sum(len(b["input"]) for b in emb if b["input_type"] == "passage") == 3  # the 3 pages
        ranked = [b for p, b in bodies if p == "/v1/ranking"]
        assert len(ranked) == 1 and ranked[0]["query"]["text"].startswith("What port")
        assert len(ranked[0]["passages"]) == 3  # all 3 passages (fewer than the 6 candidates)
        # the reranker goes down: the answer still comes, in fused order, with one warning line
        srv.reset("500", fail_paths={"/v1/ranking"}, fail_times=None)
        caplog.set_level(logging.WARNING, logger="kbchat.remote")
        c.reranker._client.backoff = 0.01
        await _say(app, "What port does the zebra protocol use?")
        final = _answers(ctx.emitter)[-1]["output"]
        assert "According to" in final and "zebra.pdf, page 2" in final
        assert len([r for r in caplog.records if "reranking skipped" in r.getMessage()]) == 1
        assert KEY not in caplog.text
    finally:
        context_var.reset(token)

"""A real embedding + reranking server on loopback for tests and benchmarks (``StubModelServer``).

Speaks the shapes kbchat.remote talks to: OpenAI / vLLM / Ollama / TEI ``POST /v1/embeddings`` (NVIDIA NIM's
with ``input_type``), TEI's native ``POST /embed``, NIM's ``POST /v1/ranking``, TEI's ``POST /rerank`` and
the Cohere / vLLM ``POST /v1/rerank``. Vectors come from a hashed bag of words (deterministic, texts
sharing words are near: retrieval works) or from the real local embedder (``backend="local"``).
Reranking scores are the share of the question's words found in the passage.

Run by hand: ``python -m tests.stubs.models --port 8012 [--backend local]`` (blocks until killed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time

import numpy as np

from tests.stubs.loopback import LoopbackServer, QuietHandler

MODES = ("ok", "401", "500", "429", "slow", "wrongdim", "garbage")
_WORD = re.compile(r"\w+", re.U)


def words(text: str) -> list[str]:
    """Lower-cased words; CJK runs split into characters."""
    out = []
    for w in _WORD.findall(text.lower()):
        out += list(w) if re.search(r"[\u3040-\u9fff\uac00-\ud7af]", w) else [w]
    return out


def hashed_vectors(texts: list[str], dim: int) -> np.ndarray:
    """Deterministic bag-of-words vectors: each word adds +-1 at a bucket chosen by its hash."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in words(t) or [""]:
            h = hashlib.blake2b(w.encode(), digest_size=8).digest()
            out[i, int.from_bytes(h[:4], "little") % dim] += 1.0 if h[4] & 1 else -1.0
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n > 0, n, 1.0)


def local_backend():
    """encode(texts) with the bundled local embedder (fp32, torch): real retrieval quality."""
    from kbchat.settings import Settings, offline_model_env
    from kbchat.search.loaders import load_embedder

    offline_model_env()
    emb = load_embedder(Settings(embedding_precision="fp32", query_backend="torch"))
    return emb._encode, emb.dim


def overlap_score(question: str, text: str) -> float:
    q = set(words(question))
    return len(q & set(words(text))) / len(q) if q else 0.0


class StubModelServer(LoopbackServer):
    """Embedding and reranking routes on 127.0.0.1; ``mode`` switches the behaviour at run time.

    ``model``: the embedding model served (another name: 404 "does not exist", as vLLM says it).
    ``require_input_type``: answer 400 without NIM's input_type, as NIM retrieval models do.
    ``api_key``: require this Bearer key (401 otherwise). ``rerank_apis``: which reranking routes exist.
    ``fail_times``: in mode "429" / "500", how many requests fail before it answers (None: all).
    ``fail_paths``: the paths the mode's failures apply to (None: all), e.g. only the reranking route.
    """

    thread_name = "stub-models"

    def __init__(self, mode: str = "ok", *, port: int = 0, model: str = "stub-embed", dim: int = 64,
                 backend: str = "hash", require_input_type: bool = False, api_key: str | None = None,
                 rerank_apis: tuple[str, ...] = ("nim", "tei", "cohere"), fail_times: int | None = None,
                 slow_seconds: float = 3.0, fail_paths: set | None = None):
        super().__init__(port=port)
        self.mode = mode
        self.fail_paths = fail_paths  # the mode's failures apply to these paths only (None: every path)
        self.model = model
        self.dim = dim
        self.require_input_type = require_input_type
        self.api_key = api_key
        self.rerank_apis = set(rerank_apis)
        self.fail_times = fail_times
        self.slow_seconds = slow_seconds
        self.requests: list[tuple[str, dict, dict]] = []   # (path, body, headers)
        self._failed = 0
        self._encode = None
        if backend == "local":
            self._encode, self.dim = local_backend()
        self._lock = threading.Lock()

    def reset(self, mode: str = "ok", **kw) -> None:
        """Back to ``mode`` with no recorded requests (attributes in ``kw`` set too)."""
        self.mode = mode
        self.requests.clear()
        self._failed = 0
        for k, v in kw.items():
            setattr(self, k, v)

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.requests]

    # ---- behaviour ----------------------------------------------------------------------------
    def vectors(self, texts: list[str]) -> np.ndarray:
        if self._encode is not None:
            return self._encode(texts)
        return hashed_vectors(texts, self.dim)

    def _failure(self, h, path: str) -> bool:
        """Answer the mode's failure if this request should fail; True if it did."""
        mode = self.mode if self.fail_paths is None or path in self.fail_paths else "ok"
        if self.api_key and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            h._json(401, {"error": {"message": "Invalid API key", "type": "authentication_error"}})
            return True
        if mode == "401":
            h._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
            return True
        if mode in ("429", "500"):
            with self._lock:
                fail = self.fail_times is None or self._failed < self.fail_times
                if fail:
                    self._failed += 1
            if fail:
                status = int(mode)
                h._json(status, {"error": {"message": "Too many requests" if status == 429 else "Internal error",
                                           "type": "server_error"}}, headers={"Retry-After": "0"})
                return True
        if mode == "slow":
            self._stopping.wait(self.slow_seconds)
        if mode == "garbage":
            h._raw(200, b"<html>not json</html>", "text/html")
            return True
        return False

    def _embeddings(self, h, body: dict) -> None:
        if body.get("model") != self.model:
            h._json(404, {"object": "error", "message": f"The model `{body.get('model')}` does not exist.",
                          "type": "NotFoundError", "code": 404})
            return
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if self.require_input_type and body.get("input_type") not in ("query", "passage"):
            h._json(400, {"detail": "'input_type' parameter is required for asymmetric models"})
            return
        vecs = self.vectors(list(texts))
        if self.mode == "wrongdim":
            vecs = vecs[:, : max(1, vecs.shape[1] // 2)]
        h._json(200, {"object": "list", "model": self.model, "usage": {"prompt_tokens": 1, "total_tokens": 1},
                      "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                               for i, v in reversed(list(enumerate(vecs)))]})  # any order: index decides

    def _tei_embed(self, h, body: dict) -> None:
        texts = body.get("inputs")
        texts = [texts] if isinstance(texts, str) else texts
        vecs = self.vectors(list(texts))
        if self.mode == "wrongdim":
            vecs = vecs[:, : max(1, vecs.shape[1] // 2)]
        h._json(200, vecs.tolist())

    def _rerank(self, h, api: str, body: dict) -> None:
        if api == "nim":
            q, texts = body["query"]["text"], [p["text"] for p in body["passages"]]
        elif api == "tei":
            q, texts = body["query"], body["texts"]
        else:
            q, texts = body["query"], body["documents"]
        scored = sorted(((i, overlap_score(q, t)) for i, t in enumerate(texts)), key=lambda x: -x[1])
        if api == "nim":
            h._json(200, {"rankings": [{"index": i, "logit": s * 10 - 5} for i, s in scored]})
        elif api == "tei":
            h._json(200, [{"index": i, "score": s} for i, s in scored])
        else:
            h._json(200, {"id": "rerank-stub", "results": [{"index": i, "relevance_score": s}
                                                           for i, s in scored[: body.get("top_n") or None]]})

    # ---- HTTP ---------------------------------------------------------------------------------
    def _handler_class(self):
        stub = self

        class Handler(QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"error": "invalid JSON"})
                    return
                path = self.path.rstrip("/")
                stub.requests.append((path, body, dict(self.headers)))
                routes = {"/v1/embeddings": "embeddings", "/embed": "tei_embed", "/v1/ranking": "nim",
                          "/rerank": "tei", "/v1/rerank": "cohere"}
                kind = routes.get(path)
                if kind in ("nim", "tei", "cohere") and kind not in stub.rerank_apis:
                    kind = None
                if kind is None:
                    self._json(404, {"error": f"no route {path}"})
                    return
                if stub._failure(self, path):
                    return
                try:
                    if kind == "embeddings":
                        stub._embeddings(self, body)
                    elif kind == "tei_embed":
                        stub._tei_embed(self, body)
                    else:
                        stub._rerank(self, kind, body)
                except (KeyError, TypeError):
                    self._json(422, {"error": "Unprocessable Entity: missing field", "error_type": "Validation"})

        return Handler


def main(argv: list[str] | None = None) -> None:
    """Command line: serve a StubModelServer on a port until killed."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8012)
    ap.add_argument("--model", default="stub-embed")
    ap.add_argument("--backend", default="hash", choices=("hash", "local"))
    ap.add_argument("--dim", type=int, default=64)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    stub = StubModelServer(port=a.port, model=a.model, backend=a.backend, dim=a.dim)
    print(f"StubModelServer ({a.backend}, dim {stub.dim}, ready in {time.perf_counter() - t0:.1f} s) "
          f"serving at http://127.0.0.1:{a.port}", flush=True)
    stub.serve_forever()


if __name__ == "__main__":
    main()

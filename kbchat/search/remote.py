"""Embeddings and reranking from model servers: NVIDIA NIM, vLLM, Hugging Face TEI, Ollama, OpenAI, Cohere.

RemoteEmbedder has the interface of kbchat.search.embedder.LocalEmbedder (name, dim, encode_passages, encode_query,
describe, summary, vectors_compatible, precision), so Store, Collection and search use it unchanged;
RemoteReranker has the rerank(question, hits) of kbchat.search.embedder.CrossEncoderReranker. Only httpx and numpy are
imported here: with a server configured no process loads torch, sentence-transformers or onnxruntime.
Every failure is one ModelServerError line naming the server, the cause and the setting to check;
API keys go in the Authorization header only and are never logged or put in a message.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import numpy as np

from kbchat.errors import ModelServerError

log = logging.getLogger("kbchat.remote")

RETRY_STATUS = (429, 500, 502, 503, 504)
BACKOFF_SECONDS = 0.5      # first retry after 0.5 s, then 1 s, 2 s, ...
MAX_RETRY_AFTER = 30.0     # a server's Retry-After is honoured up to this
_VERSIONED = re.compile(r"/v\d+$")


def _secret(value) -> str:
    if value is None:
        return ""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _server_message(resp: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI, vLLM, TEI, Ollama, NIM shapes), short."""
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    msg = body
    if isinstance(body, dict):
        err = body.get("error")
        msg = (err.get("message") if isinstance(err, dict) else err) or body.get("message") or \
            body.get("detail") or body.get("error_type") or ""
    msg = " ".join(str(msg or "").split())
    return msg[:200]


class _Client:
    """POST JSON to one server with a time limit, retries with back-off on 429 / 5xx / dropped
    connections, and one ModelServerError line for everything else."""

    def __init__(self, what: str, base_url: str, api_key, *, timeout: float, retries: int,
                 url_setting: str, key_setting: str, model_setting: str, timeout_setting: str,
                 backoff: float = BACKOFF_SECONDS):
        self.what = what                    # "embedding server" / "reranking server"
        self.base_url = base_url.rstrip("/")
        self._key = _secret(api_key)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.url_setting, self.key_setting, self.model_setting = url_setting, key_setting, model_setting
        self.timeout_setting = timeout_setting
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=True)

    def _fail(self, message: str) -> ModelServerError:
        if self._key:  # a server may echo part of the request; never the key
            message = message.replace(self._key, "***")
        return ModelServerError(f"{self.what} {self.base_url} {message}")

    def post(self, url: str, payload: dict, *, model: str | None = None,
             wrong_route: tuple[int, ...] = ()) -> httpx.Response | None:
        """The 2xx response; None if the status is in ``wrong_route`` (the caller tries another API)."""
        attempt = 0
        while True:
            try:
                resp = self._http.post(url, json=payload)
            except httpx.TimeoutException:
                raise self._fail(f"did not answer within {self.timeout:g} s ({self.timeout_setting})") from None
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if attempt < self.retries:
                    attempt += 1
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                    continue
                why = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
                raise self._fail(f"is unreachable ({why}); start it or check {self.url_setting}") from None
            except httpx.HTTPError as exc:
                raise self._fail(f"failed ({type(exc).__name__}); check {self.url_setting}") from None
            status = resp.status_code
            if status < 300:
                return resp
            if status in RETRY_STATUS and attempt < self.retries:
                attempt += 1
                wait = self.backoff * 2 ** (attempt - 1)
                try:
                    wait = max(wait, min(float(resp.headers.get("retry-after", 0)), MAX_RETRY_AFTER))
                except ValueError:
                    pass
                log.info("%s %s answered HTTP %d; retry %d of %d in %.1f s", self.what, self.base_url, status,
                         attempt, self.retries, wait)
                time.sleep(wait)
                continue
            if status in wrong_route:
                return None
            raise self._http_error(resp, model, attempts=attempt + 1)

    def _http_error(self, resp: httpx.Response, model: str | None, *, attempts: int) -> ModelServerError:
        status = resp.status_code
        if status in (401, 403):
            return self._fail(f"refused the API key (HTTP {status}); set {self.key_setting}")
        msg = _server_message(resp)
        low = msg.lower()
        model_missing = "model" in low and any(w in low for w in (
            "not found", "does not exist", "unknown", "not exist", "no such", "not available", "not served"))
        if model and (model_missing or (status == 404 and "model" in low)):
            return self._fail(f"does not serve model {model!r} (HTTP {status}); set {self.model_setting} to a "
                              "model it serves")
        if status == 404:
            return self._fail(f"has no {urlsplit(str(resp.request.url)).path} endpoint (HTTP 404); check "
                              f"{self.url_setting}")
        if status in RETRY_STATUS:
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            return self._fail(f"failed with HTTP {status}{tries}" + (f": {msg}" if msg else ""))
        return self._fail(f"rejected the request (HTTP {status})" + (f": {msg}" if msg else ""))

    def json(self, resp: httpx.Response):
        try:
            return resp.json()
        except ValueError:
            raise self._fail(f"answered with something that is not JSON (is it a model server? "
                             f"{self.url_setting})") from None

    def close(self) -> None:
        self._http.close()


# ------------------------------------------------------------------------------------------ embeddings


def embeddings_url(base_url: str, api: str) -> str:
    """Where the vectors are asked for: <base>/embeddings (OpenAI, NIM), <root>/embed (TEI native).
    A URL already ending in /embeddings or /embed is used as it is."""
    base = base_url.rstrip("/")
    if base.endswith("/embeddings") or base.endswith("/embed"):
        return base
    if api == "tei":
        return _VERSIONED.sub("", base) + "/embed"
    return base + "/embeddings" if _VERSIONED.search(base) else base + "/v1/embeddings"


def embedding_api(base_url: str, model: str, api: str = "auto") -> str:
    """The API flavour: the setting, or for 'auto' NIM for NVIDIA URLs and nvidia/* models, else OpenAI."""
    if api != "auto":
        return api
    host = (urlsplit(base_url).hostname or "").lower()
    if host.endswith("nvidia.com") or model.lower().startswith(("nvidia/", "nv-")):
        return "nim"
    if base_url.rstrip("/").endswith("/embed"):
        return "tei"
    return "openai"


class RemoteEmbedder:
    """Vectors from an embedding server, L2-normalised float32 like the local Embedder's.

    ``name`` is the model name, recorded by every collection it writes: a base built with one model
    refuses another (Store.collection). ``dim`` is the configured dimension, or asked of the server
    with one probe text on first use; every answer is checked against it.
    """

    precision = "remote"            # what collections record as the variant
    requested_precision = "remote"
    query_backend = "remote"
    choice = None
    choice_source = "model server"

    def __init__(self, base_url: str, model: str, *, api_key=None, api: str = "auto", dim: int | None = None,
                 query_prefix: str = "", passage_prefix: str = "", batch_size: int = 32, concurrency: int = 2,
                 timeout: float = 60.0, retries: int = 3, backoff: float = BACKOFF_SECONDS):
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.api = embedding_api(base_url, model, api)
        self._auto = api == "auto"
        self.url = embeddings_url(base_url, self.api)
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        self._configured_dim = dim
        self._dim: int | None = dim
        self._dim_lock = threading.Lock()
        self._client = _Client("embedding server", base_url, api_key, timeout=timeout, retries=retries,
                               url_setting="KBCHAT_EMBEDDING_BASE_URL", key_setting="KBCHAT_EMBEDDING_API_KEY",
                               model_setting="KBCHAT_EMBEDDING_MODEL", timeout_setting="KBCHAT_EMBEDDING_TIMEOUT",
                               backoff=backoff)

    @property
    def variant(self) -> str:
        return self.precision

    @property
    def dim(self) -> int:
        """The vector dimension (asked of the server once, unless configured)."""
        if self._dim is None:
            with self._dim_lock:
                if self._dim is None:
                    self._dim = int(self._request(["kbchat dimension probe"], "query", check=False).shape[1])
        return self._dim

    def _payload(self, texts: list[str], input_type: str) -> dict:
        if self.api == "tei":
            return {"inputs": texts, "normalize": True, "truncate": True}
        body = {"model": self.name, "input": texts, "encoding_format": "float"}
        if self.api == "nim":
            body["input_type"] = input_type  # NIM retrieval models embed questions and passages differently
            body["truncate"] = "END"
        return body

    def _request(self, texts: list[str], input_type: str, *, check: bool = True) -> np.ndarray:
        try:
            resp = self._client.post(self.url, self._payload(texts, input_type), model=self.name)
        except ModelServerError as err:
            if not (self._auto and self.api == "openai" and "input_type" in str(err)):
                raise
            # A NIM (or NIM-like) server behind a URL 'auto' could not tell: it asks for input_type.
            log.info("embedding server %s asks for input_type: using the nim API", self.base_url)
            self.api = "nim"
            resp = self._client.post(self.url, self._payload(texts, input_type), model=self.name)
        body = self._client.json(resp)
        try:
            if self.api == "tei":
                rows = body
            else:
                data = sorted(body["data"], key=lambda d: d.get("index", 0))
                rows = [d["embedding"] for d in data]
            vecs = np.asarray(rows, dtype=np.float32)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._client._fail(f"answered without vectors for model {self.name!r} "
                                     f"(is {self.url} an embeddings endpoint? KBCHAT_EMBEDDING_API)") from None
        if vecs.ndim != 2 or len(vecs) != len(texts):
            raise self._client._fail(f"returned {len(vecs) if vecs.ndim else 0} vectors for {len(texts)} texts")
        if check and self._dim is not None and vecs.shape[1] != self._dim:
            why = ("KBCHAT_EMBEDDING_DIM" if self._configured_dim else "what it returned at start-up")
            raise self._client._fail(f"returned vectors of dimension {vecs.shape[1]} for model {self.name!r}; "
                                     f"expected {self._dim} ({why})")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms > 0, norms, 1.0)

    def _encode(self, texts: list[str], input_type: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        dim = self.dim  # probe first, so every batch is checked against it
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if len(batches) == 1 or self.concurrency == 1:
            parts = [self._request(b, input_type) for b in batches]
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(batches)), thread_name_prefix="embed") as pool:
                parts = list(pool.map(lambda b: self._request(b, input_type), batches))
        out = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        return out.astype(np.float32, copy=False)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 vectors of passages (passage prefix applied, input_type 'passage' for NIM)."""
        return self._encode([self.passage_prefix + t for t in texts], "passage")

    def encode_query(self, text: str) -> np.ndarray:
        """(dim,) float32 vector of a question (query prefix applied, input_type 'query' for NIM)."""
        return self._encode([self.query_prefix + text], "query")[0]

    def vectors_compatible(self, written_by: str | None) -> str:
        """Always '': the server is the one authority on its model's vectors (the model name and the
        dimension are checked by Store.collection)."""
        return ""

    def fingerprint(self) -> str:
        return f"remote|{self.name}|{self.url}"

    def describe(self) -> dict:
        """What `kbchat doctor` prints and the app logs: server, API, model, dimension, batching."""
        return {"remote": True, "model": self.name, "url": self.url, "api": self.api,
                "dim": self._dim, "variant": self.precision, "requested_precision": self.precision,
                "query_backend": self.query_backend, "source": self.choice_source,
                "batch_size": self.batch_size, "concurrency": self.concurrency,
                "timeout_s": self._client.timeout, "retries": self._client.retries}

    def summary(self) -> str:
        """describe() as one log line (never the key)."""
        dim = f"dim {self._dim}" if self._dim else "dim asked on first use"
        return (f"embedder: {self.name} from the {self.api} API at {self.url} ({dim}; {self.batch_size} "
                f"passages a request, {self.concurrency} in flight; {self._client.timeout:g} s limit, "
                f"{self._client.retries} retries)")

    def close(self) -> None:
        self._client.close()


_EMBEDDERS: dict[tuple, RemoteEmbedder] = {}
_LOCK = threading.Lock()


def load_remote_embedder(settings) -> RemoteEmbedder:
    """The process-wide RemoteEmbedder for these settings (loaders.load_embedder calls this when
    KBCHAT_EMBEDDING_BASE_URL is set). Asks the server for the dimension unless it is configured,
    so a server that is down, refuses the key or lacks the model fails here, in one line."""
    from kbchat.errors import ConfigError
    from kbchat.settings import DEFAULT_EMBEDDER

    model = settings.embedding_model
    if model == DEFAULT_EMBEDDER:
        raise ConfigError("KBCHAT_EMBEDDING_BASE_URL is set: set KBCHAT_EMBEDDING_MODEL to the model the "
                          "embedding server serves (e.g. nvidia/nv-embedqa-e5-v5, BAAI/bge-m3, nomic-embed-text)")
    key = (settings.embedding_base_url, model, _secret(settings.embedding_api_key), settings.embedding_api,
           settings.embedding_dim, settings.embedding_query_prefix, settings.embedding_passage_prefix,
           settings.embedding_server_batch_size, settings.embedding_server_concurrency,
           settings.embedding_timeout, settings.server_retries)
    with _LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            emb = RemoteEmbedder(
                settings.embedding_base_url, model, api_key=settings.embedding_api_key,
                api=settings.embedding_api, dim=settings.embedding_dim,
                query_prefix=settings.embedding_query_prefix, passage_prefix=settings.embedding_passage_prefix,
                batch_size=settings.embedding_server_batch_size,
                concurrency=settings.embedding_server_concurrency,
                timeout=settings.embedding_timeout, retries=settings.server_retries,
            )
            emb.dim  # noqa: B018 -- fail now, in one line, not at the first upload
            log.info("%s", emb.summary())
            _EMBEDDERS[key] = emb
        return emb


# ------------------------------------------------------------------------------------------ reranking

RERANK_APIS = ("nim", "cohere", "tei")  # the order 'auto' tries them in


def rerank_url(base_url: str, api: str) -> str:
    """NIM: <base>/v1/ranking; Cohere-style: <base>/v1/rerank; TEI: <root>/rerank. A URL ending in
    /ranking, /reranking or /rerank is used as it is (hosted NIM rerankers have per-model URLs)."""
    base = base_url.rstrip("/")
    if base.endswith(("/ranking", "/reranking", "/rerank")):
        return base
    root = _VERSIONED.sub("", base)
    if api == "nim":
        return (base if _VERSIONED.search(base) else root + "/v1") + "/ranking"
    if api == "cohere":
        return (base if _VERSIONED.search(base) else root + "/v1") + "/rerank"
    return root + "/rerank"


def _apis_for(base_url: str, api: str) -> list[str]:
    if api != "auto":
        return [api]
    path = urlsplit(base_url).path.rstrip("/")
    if path.endswith(("/ranking", "/reranking")) or (urlsplit(base_url).hostname or "").endswith("nvidia.com"):
        return ["nim"]
    if path.endswith("/rerank"):
        return ["cohere", "tei"] if _VERSIONED.search(path[: -len("/rerank")]) else ["tei", "cohere"]
    return list(RERANK_APIS)


class RemoteReranker:
    """Reorders fused candidates by a reranking server's scores (same contract as retrieve.Reranker).

    When the server fails the search still answers, in fused order, with one warning line.
    ``candidates``: how many fused candidates retrieve.search hands over.
    """

    def __init__(self, base_url: str, model: str | None = None, *, api_key=None, api: str = "auto",
                 timeout: float = 10.0, retries: int = 3, candidates: int = 45,
                 backoff: float = BACKOFF_SECONDS):
        self.model_name = model or ""
        self.base_url = base_url.rstrip("/")
        self.candidates = candidates
        self._apis = _apis_for(base_url, api)
        self.api: str | None = self._apis[0] if len(self._apis) == 1 else None  # None: found on first call
        self._client = _Client("reranking server", base_url, api_key, timeout=timeout, retries=retries,
                               url_setting="KBCHAT_RERANKER_BASE_URL", key_setting="KBCHAT_RERANKER_API_KEY",
                               model_setting="KBCHAT_RERANKER_MODEL", timeout_setting="KBCHAT_RERANKER_TIMEOUT",
                               backoff=backoff)
        self._lock = threading.Lock()

    def _payload(self, api: str, question: str, texts: list[str]) -> dict:
        if api == "nim":
            body = {"query": {"text": question}, "passages": [{"text": t} for t in texts], "truncate": "END"}
        elif api == "tei":
            body = {"query": question, "texts": texts, "truncate": True, "raw_scores": False}
        else:
            body = {"query": question, "documents": texts, "top_n": len(texts), "return_documents": False}
        if self.model_name and api != "tei":
            body["model"] = self.model_name
        return body

    def _parse(self, api: str, body) -> list[tuple[int, float]]:
        if api == "nim":
            return [(int(r["index"]), float(r["logit"])) for r in body["rankings"]]
        if api == "tei":
            return [(int(r["index"]), float(r["score"])) for r in body]
        return [(int(r["index"]), float(r["relevance_score"])) for r in body["results"]]

    def scores(self, question: str, texts: list[str]) -> list[float]:
        """One score per text (higher is better); raises ModelServerError."""
        apis = [self.api] if self.api else self._apis
        for api in apis:
            last = api == apis[-1]
            url = rerank_url(self.base_url, api)
            resp = self._client.post(url, self._payload(api, question, texts), model=self.model_name or None,
                                     wrong_route=() if last else (400, 404, 405, 415, 422))
            if resp is None:
                continue
            try:
                ranked = self._parse(api, self._client.json(resp))
            except (KeyError, TypeError, ValueError) as exc:
                if not last:
                    continue
                raise self._client._fail(f"answered without scores in the {api} shape "
                                         f"({type(exc).__name__}); set KBCHAT_RERANKER_API") from None
            out = [float("-inf")] * len(texts)
            for i, s in ranked:
                if 0 <= i < len(texts):
                    out[i] = s
            if self.api is None:
                with self._lock:
                    self.api = api
                log.info("reranking server %s speaks the %s API (%s)", self.base_url, api, url)
            return out
        raise self._client._fail(f"answered none of the reranking APIs ({', '.join(self._apis)}); "
                                 "set KBCHAT_RERANKER_API")

    def rerank(self, question: str, hits: list) -> list:
        """Hits re-ordered by the server's scores (stored in ``rerank_score``); on failure the fused
        order, with one warning line."""
        if not hits:
            return []
        try:
            scores = self.scores(question, [h.text for h in hits])
        except ModelServerError as err:
            log.warning("reranking skipped, fused order kept: %s", err)
            return hits
        for h, s in zip(hits, scores):
            h.rerank_score = s
        return sorted(hits, key=lambda h: -(h.rerank_score if h.rerank_score is not None else float("-inf")))

    def describe(self) -> str:
        api = self.api or f"auto ({'/'.join(self._apis)})"
        model = f" {self.model_name}" if self.model_name else ""
        return f"reranker{model} from the {api} API at {self.base_url} ({self.candidates} candidates)"

    def close(self) -> None:
        self._client.close()


__all__ = ["RemoteEmbedder", "RemoteReranker", "embedding_api", "embeddings_url", "load_remote_embedder",
           "rerank_url"]

"""One factory per capability, chosen by the settings: the embedder (local model or a model server), the
reranker (a server, the local cross-encoder, or none) and the store (embedded or PostgreSQL).

Nobody else picks an implementation: the UI, the CLI and the tools call these and type against the
Protocols in kbchat.search.base.
"""

from __future__ import annotations

import logging
import threading

from kbchat.errors import ConfigError
from kbchat.records.database import database_url, open_database
from kbchat.search.base import Embedder, Reranker, Store
from kbchat.search.embedder import CrossEncoderReranker, LocalEmbedder, choose_variant
from kbchat.search.remote import RemoteReranker, load_remote_embedder
from kbchat.search.store import EmbeddedStore

log = logging.getLogger("kbchat.store")


_EMBEDDERS: dict[tuple, LocalEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def load_embedder(settings) -> Embedder:
    """The process-wide LocalEmbedder for these settings (cached per model, precision and prefixes).

    "auto" precision / query backend are resolved for this CPU (choose_variant: the cached choice, or
    a measurement of a few seconds on probe texts the first time); ``LocalEmbedder.describe()`` says what
    was chosen and why. With KBCHAT_EMBEDDING_BASE_URL set: the model server's RemoteEmbedder
    (remote.RemoteEmbedder), and nothing of torch is imported."""
    if getattr(settings, "embedding_base_url", None):
        return load_remote_embedder(settings)  # type: ignore[return-value]
    key = (
        settings.embedding_model,
        settings.embedding_precision,
        settings.embedding_query_prefix,
        settings.embedding_passage_prefix,
        settings.embedding_batch_size,
        settings.query_backend,
        str(settings.model_cache_path()),
    )
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            try:
                emb = LocalEmbedder(
                    settings.embedder_path(),
                    name=settings.embedding_model,
                    precision=settings.embedding_precision,
                    query_prefix=settings.embedding_query_prefix,
                    passage_prefix=settings.embedding_passage_prefix,
                    batch_size=settings.embedding_batch_size,
                    query_backend=settings.query_backend,
                    cache_dir=settings.model_cache_path(),
                )
            except Exception as exc:
                raise ConfigError(
                    f"cannot load embedding model {settings.embedding_model!r}: {exc} "
                    "(set KBCHAT_EMBEDDING_MODEL to an installed model folder)"
                ) from exc
            try:
                choose_variant(emb, settings.model_cache_path())
            except Exception as exc:  # a failed measurement must not stop the app: fp32 / torch as before
                log.warning("embedder variant measurement failed (%s: %s); using fp32 with torch questions",
                            type(exc).__name__, exc)
                emb.precision, emb.query_backend = "fp32", "torch"
            log.info("%s", emb.summary())
            _EMBEDDERS[key] = emb
        return emb


def load_reranker(settings) -> Reranker | None:
    """The reranker the settings ask for: a RemoteReranker (reranker_base_url), the local CrossEncoder
    Reranker (reranker_model), or None. Both take reranker_candidates fused candidates."""
    if settings.reranker_base_url:
        rr = RemoteReranker(settings.reranker_base_url, settings.reranker_model, api_key=settings.reranker_api_key,
                            api=settings.reranker_api, timeout=settings.reranker_timeout,
                            retries=settings.server_retries, candidates=settings.reranker_candidates)
        log.info("%s", rr.describe())
        return rr
    if settings.reranker_model:
        rr = CrossEncoderReranker(settings.reranker_model)
        rr.candidates = settings.reranker_candidates
        return rr
    return None


def open_store(settings, embedder: Embedder | None) -> Store:
    """The store KBCHAT_DATABASE_URL chooses: PostgreSQL (pgstore.PgStore, passages in the database every
    replica shares) or, by default, the embedded one in the data dir. ``embedder`` may be None for
    drops."""
    from kbchat.search.multilingual import load_multilingual

    ml = load_multilingual(settings.multilingual_embedder) if embedder is not None else None
    if database_url(settings).startswith("postgresql"):
        from kbchat.search.pgstore import PgStore  # psycopg and pgvector only when asked for

        return PgStore(open_database(settings), embedder, ml)
    return EmbeddedStore(settings.data_dir, embedder, ml)


__all__ = ["load_embedder", "load_reranker", "open_store"]

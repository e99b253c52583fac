"""Finding passages: the contracts (base.py: Store, Collection, Embedder, Reranker Protocols and the types
both stores share), the embedded store (store.py: Chroma + tantivy + a SQLite catalog) and the PostgreSQL
one (pgstore.py), the keyword analyzer (lexical.py), the local models (embedder.py, with the precision
measurement in precision.py) and model servers (remote.py), hybrid retrieval with the follow-up rewrite
(retrieve.py), and the one place that picks implementations from the settings (loaders.py).
migrate.py copies an embedded deployment into PostgreSQL.
"""

from __future__ import annotations

from kbchat import lazy_face

# name -> the module that owns it
_PUBLIC = {
    "Store": "kbchat.search.base",
    "Collection": "kbchat.search.base",
    "Embedder": "kbchat.search.base",
    "Reranker": "kbchat.search.base",
    "Hit": "kbchat.search.base",
    "AddResult": "kbchat.search.base",
    "DocumentInfo": "kbchat.search.base",
    "add_many": "kbchat.search.base",
    "load_embedder": "kbchat.search.loaders",
    "load_reranker": "kbchat.search.loaders",
    "open_store": "kbchat.search.loaders",
    "search": "kbchat.search.retrieve",
    "search_query": "kbchat.search.retrieve",
}

__getattr__ = lazy_face(__name__, _PUBLIC)


__all__ = sorted(_PUBLIC)

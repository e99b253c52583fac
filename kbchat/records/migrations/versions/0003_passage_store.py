"""The passage store in PostgreSQL (kbchat.search.pgstore): collections, documents, passages with their
vectors (pgvector halfvec) and analysed tokens, and per-collection term document frequencies for BM25.

Only on PostgreSQL: a SQLite database keeps its passages in the data dir (kbchat.search.store), so this
revision does nothing there. The HNSW index is per vector dimension and made by PgStore when a
collection of a new dimension is created.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE kb_collections (
    name text PRIMARY KEY, embedder text NOT NULL, dim integer NOT NULL, variant text,
    created_at text NOT NULL,
    n_passages bigint NOT NULL DEFAULT 0,   -- passages indexed (BM25's N)
    n_tokens bigint NOT NULL DEFAULT 0      -- their tokens (BM25's average length)
);
CREATE TABLE kb_documents (
    seq bigserial PRIMARY KEY, collection text NOT NULL, source_key text NOT NULL, source text NOT NULL,
    path text NOT NULL, doc_hash text NOT NULL, pages integer NOT NULL, passages integer NOT NULL,
    origin text NOT NULL, added_at text NOT NULL, added_by text NOT NULL DEFAULT '',
    active boolean NOT NULL DEFAULT false
);
CREATE INDEX kb_documents_key ON kb_documents (collection, source_key, active);
CREATE INDEX kb_documents_hash ON kb_documents (collection, doc_hash, active);
CREATE TABLE kb_passages (
    collection text NOT NULL, id text NOT NULL, doc_hash text NOT NULL, source text NOT NULL,
    page integer NOT NULL, page_label text, start integer NOT NULL, "end" integer NOT NULL,
    text text NOT NULL, ocr boolean NOT NULL DEFAULT false, context text NOT NULL DEFAULT '',
    dim integer NOT NULL, embedding halfvec NOT NULL,
    terms text[] NOT NULL,                  -- distinct tokens of kbchat.search.lexical.analyze
    tfs integer[] NOT NULL,                 -- their counts, in the same order
    ntok integer NOT NULL,                  -- number of tokens (for the average length)
    lnorm integer NOT NULL,                 -- ntok rounded as tantivy stores it (BM25 length)
    PRIMARY KEY (collection, id)
);
CREATE INDEX kb_passages_hash ON kb_passages (collection, doc_hash);
CREATE INDEX kb_passages_terms ON kb_passages USING gin (terms);
CREATE TABLE kb_terms (
    collection text NOT NULL, term text NOT NULL, df bigint NOT NULL,
    PRIMARY KEY (collection, term)
);
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for stmt in _TABLES.split(";"):
        if stmt.strip():
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for t in ("kb_terms", "kb_passages", "kb_documents", "kb_collections"):
        op.execute(f"DROP TABLE IF EXISTS {t}")

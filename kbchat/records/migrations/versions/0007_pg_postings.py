"""Keyword search from postings in PostgreSQL (kbchat.search.pgstore): kb_postings holds, per collection, term
and document (and write batch: ``block``, the batch's first passage id), the passages holding the term as packed
big-endian records (page and start: the passage id; tf; tantivy's length norm), keyed on (collection, term,
doc_hash, block), so a question reads only the postings of its terms in the active documents. Existing
passages are backfilled from their ``terms``/``tfs`` arrays. The GIN index on ``kb_passages.terms`` (0003),
which only the old candidate search read, is dropped.

Only on PostgreSQL, as 0003.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_UP = """
CREATE TABLE kb_postings (
    collection text NOT NULL, term text NOT NULL, doc_hash text NOT NULL, block text NOT NULL,
    -- per passage holding the term, 12 bytes: page (int4) and start (int4): with the document hash its id,
    -- tf (int2): the term's occurrences in it, lnorm (int2): its length as tantivy stores it
    post bytea NOT NULL,
    PRIMARY KEY (collection, term, doc_hash, block)
);
CREATE INDEX kb_postings_doc ON kb_postings (collection, doc_hash);
INSERT INTO kb_postings (collection, term, doc_hash, block, post)
    SELECT p.collection, u.term, p.doc_hash, min(p.id),
           string_agg(int4send(p.page) || int4send(p.start) || int2send(u.tf::int2) || int2send(p.lnorm::int2),
                      ''::bytea ORDER BY p.id)
    FROM kb_passages p, unnest(p.terms, p.tfs) AS u(term, tf)
    GROUP BY p.collection, u.term, p.doc_hash;
DROP INDEX IF EXISTS kb_passages_terms;
"""

_DOWN = """
CREATE INDEX IF NOT EXISTS kb_passages_terms ON kb_passages USING gin (terms);
DROP TABLE IF EXISTS kb_postings;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for stmt in _UP.split(";"):
        if stmt.strip():
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for stmt in _DOWN.split(";"):
        if stmt.strip():
            op.execute(stmt)

"""Keyword search from postings in PostgreSQL: a term -> passage table (term frequency and the passage's
length norm) with its key on (collection, term, id), so a question reads only the postings of its terms
(kbchat.search.pgstore); existing passages are backfilled from their ``terms``/``tfs`` arrays. The GIN index
on ``kb_passages.terms`` (0003), which only the old candidate search read, is dropped.

Only on PostgreSQL, as 0003.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-05
"""

from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None

_UP = """
CREATE TABLE kb_postings (
    collection text NOT NULL, term text NOT NULL, id text NOT NULL,
    tf integer NOT NULL,                    -- occurrences of the term in the passage
    lnorm integer NOT NULL,                 -- the passage's length as tantivy stores it (kb_passages.lnorm)
    PRIMARY KEY (collection, term, id)
);
INSERT INTO kb_postings (collection, term, id, tf, lnorm)
    SELECT p.collection, u.term, p.id, u.tf, p.lnorm FROM kb_passages p, unnest(p.terms, p.tfs) AS u(term, tf);
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

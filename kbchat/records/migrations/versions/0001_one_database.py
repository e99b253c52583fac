"""One database: accounts, chat history, answers, thread uploads, shared Q&A.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("identifier", sa.String(255), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(255)),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("user_id", sa.String(36)),
        sa.Column("user_identifier", sa.String(255)),
        sa.Column("tags", sa.JSON),
        sa.Column("meta", sa.JSON),
    )
    op.create_index("threads_by_user", "threads", ["user_identifier", "updated_at"])
    op.create_table(
        "steps",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("type", sa.String(40)),
        sa.Column("created_at", sa.String(40)),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("steps_by_thread", "steps", ["thread_id", "seq"])
    op.create_table(
        "elements",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("thread_id", sa.String(64)),
        sa.Column("for_id", sa.String(64)),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("elements_by_thread", "elements", ["thread_id"])
    op.create_table(
        "feedbacks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("for_id", sa.String(64), nullable=False, unique=True),
        sa.Column("thread_id", sa.String(64)),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text),
    )
    op.create_index("feedbacks_by_thread", "feedbacks", ["thread_id"])
    op.create_table(
        "answers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_index("answers_by_thread", "answers", ["thread_id", "created_at"])
    op.create_table(
        "uploads",
        sa.Column("thread_id", sa.String(64), primary_key=True),
        sa.Column("doc_hash", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("uploads_by_owner", "uploads", ["owner"])
    op.create_table(
        "shared",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("answer_key", sa.String(128), nullable=False, unique=True),
        sa.Column("shared_at", sa.String(40), nullable=False),
        sa.Column("persona_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("shared_by", sa.String(255)),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("shared_by_time", "shared", ["shared_at"])
    op.create_table(
        "kbchat_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in ("kbchat_meta", "shared", "uploads", "answers", "feedbacks", "elements", "steps", "threads",
                 "users"):
        op.drop_table(name)

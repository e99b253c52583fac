"""Access control: groups and memberships (hand-set or from the identity provider), who may read and
manage each knowledge base, the audit log, and per-day question counts for quotas.

Existing sites keep working: a base with no kb_access row is readable by everyone signed in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("quota_per_day", sa.Integer),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("user_identifier", sa.String(255), primary_key=True),
        sa.Column("group_name", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
    )
    op.create_index("memberships_by_group", "memberships", ["group_name"])
    op.create_table(
        "kb_access",
        sa.Column("base", sa.String(64), primary_key=True),
        sa.Column("read", sa.JSON),
        sa.Column("manage", sa.JSON),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("updated_by", sa.String(255)),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("user_identifier", sa.String(255)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("detail", sa.JSON),
        sa.Column("address", sa.String(64)),
    )
    op.create_index("audit_by_time", "audit", ["at"])
    op.create_index("audit_by_user", "audit", ["user_identifier", "at"])
    op.create_index("audit_by_action", "audit", ["action", "at"])
    op.create_table(
        "question_counts",
        sa.Column("user_identifier", sa.String(255), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for name in ("question_counts", "audit", "kb_access", "memberships", "groups"):
        op.drop_table(name)

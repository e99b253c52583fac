"""Personas in the database: the current record of each persona and every version of it (who changed
what, when), so the console edits them and a change applies to new chats without a restart.

Existing sites: the tables start empty; the app seeds them from the personas/ folder on its first start.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="published"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("updated_by", sa.String(255)),
    )
    op.create_table(
        "persona_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("persona_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("changed", sa.JSON),
        sa.Column("changed_by", sa.String(255)),
        sa.Column("changed_at", sa.String(40), nullable=False),
    )
    op.create_index("persona_versions_by_persona", "persona_versions", ["persona_id", "version"])


def downgrade() -> None:
    op.drop_table("persona_versions")
    op.drop_table("personas")

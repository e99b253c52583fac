"""API keys: programs call kbchat as one of its users (kbchat keys, /keys in the chat). Only the
SHA-256 of each key is kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("user_identifier", sa.String(255), nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("expires_at", sa.String(40)),
        sa.Column("revoked_at", sa.String(40)),
        sa.Column("last_used_at", sa.String(40)),
    )
    op.create_index("api_keys_by_user", "api_keys", ["user_identifier"])


def downgrade() -> None:
    op.drop_index("api_keys_by_user", table_name="api_keys")
    op.drop_table("api_keys")

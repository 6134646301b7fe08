"""uploads: HTTP File Upload records (XEP-0363) for quotas and expiry

Revision ID: 0401
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0401"
down_revision = "0001"
branch_labels = ("uploads",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("token", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("slot_expires", sa.BigInteger, nullable=False),
        sa.Column("stored", sa.BigInteger, nullable=True),
        **MYSQL,
    )
    op.create_index("ix_uploads_user", "uploads", ["host", "username", "created"])
    op.create_index("ix_uploads_state", "uploads", ["host", "state", "stored"])


def downgrade() -> None:
    op.drop_table("uploads")

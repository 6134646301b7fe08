"""fast: FAST authentication tokens (XEP-0484)

Revision ID: 0701
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0701"
down_revision = "0001"
branch_labels = ("fast",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fast_tokens",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("mechanism", sa.String(32), nullable=False),
        sa.Column("expiry", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("fast_tokens")

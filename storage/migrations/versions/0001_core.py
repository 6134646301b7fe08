"""core: accounts, SCRAM credentials, key-value store

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("created", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "credentials",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("mechanism", sa.String(32), primary_key=True),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer, nullable=False),
        sa.Column("stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("server_key", sa.LargeBinary(), nullable=False),
        **MYSQL,
    )
    op.create_table(
        "kv",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("store", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(191), primary_key=True),
        sa.Column("value", sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb"),
                  nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("kv")
    op.drop_table("credentials")
    op.drop_table("accounts")

"""pubsub: personal eventing nodes and items (XEP-0163, XEP-0060)

Revision ID: 0301
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BIGTEXT = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")
ROWID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

revision = "0301"
down_revision = "0001"
branch_labels = ("pubsub",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pubsub_nodes",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_index("ux_pubsub_nodes", "pubsub_nodes", ["host", "username", "node"],
                    unique=True)
    op.create_table(
        "pubsub_items",
        sa.Column("node_id", ROWID, primary_key=True),
        sa.Column("item_id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("published", sa.BigInteger, nullable=False),
        sa.Column("publisher", sa.Text, nullable=True),
        sa.Column("payload", BIGTEXT, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_pubsub_items_seq", "pubsub_items", ["node_id", "seq"])
    op.create_index("ix_pubsub_items_owner", "pubsub_items", ["host", "username"])


def downgrade() -> None:
    op.drop_table("pubsub_items")
    op.drop_table("pubsub_nodes")

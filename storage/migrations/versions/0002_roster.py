"""roster: items, pending inbound subscriptions, versions (RFC 6121)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0002"
down_revision = "0001"
branch_labels = ("roster",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster_items",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("contact", sa.String(255), primary_key=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("subscription", sa.String(4), nullable=False),
        sa.Column("ask", sa.Boolean, nullable=False),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "roster_pending",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("contact", sa.String(255), primary_key=True),
        sa.Column("stanza", sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb"),
                  nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "roster_versions",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("roster_versions")
    op.drop_table("roster_pending")
    op.drop_table("roster_items")

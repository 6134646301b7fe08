"""push: XEP-0357 push notification registrations

Revision ID: 0901
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

BIGTEXT = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0901"
down_revision = "0001"
branch_labels = ("push",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_registrations",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("service", sa.String(3071), nullable=False),
        sa.Column("node", sa.String(1023), nullable=False),
        sa.Column("options", BIGTEXT, nullable=True),
        sa.Column("enabled_at", sa.BigInteger, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("push_registrations")

"""blocking: blocklists (XEP-0191)

Revision ID: 0102
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0102"
down_revision = "0001"
branch_labels = ("blocking",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("jid", sa.String(255), primary_key=True),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("blocklist")

"""vcard: vCards (XEP-0054) with their photo hash (XEP-0153)

Revision ID: 0103
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0103"
down_revision = "0001"
branch_labels = ("vcard",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vcards",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("vcard", sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb"),
                  nullable=False),
        sa.Column("photo", sa.String(40), nullable=True),
        sa.Column("updated", sa.BigInteger, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("vcards")

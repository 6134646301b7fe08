"""rooms: persistent multi-user chat rooms and their affiliations (XEP-0045)

Revision ID: 0201
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

revision = "0201"
down_revision = "0001"
branch_labels = ("rooms",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "muc_rooms",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("subject", sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb"),
                  nullable=False),
        sa.Column("subject_nick", sa.Text, nullable=False),
        sa.Column("subject_time", sa.BigInteger, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "muc_affiliations",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("room", sa.String(255), primary_key=True),
        sa.Column("jid", sa.String(255), primary_key=True),
        sa.Column("affiliation", sa.String(8), nullable=False),
        sa.Column("nick", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        **MYSQL,
    )
    op.create_index("ix_muc_affiliations_jid", "muc_affiliations", ["host", "jid"])


def downgrade() -> None:
    op.drop_index("ix_muc_affiliations_jid", table_name="muc_affiliations")
    op.drop_table("muc_affiliations")
    op.drop_table("muc_rooms")

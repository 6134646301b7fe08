"""archive (XEP-0313) and offline queue (XEP-0160)

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import MEDIUMTEXT

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BIGTEXT = sa.Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")
ROWID = sa.BigInteger().with_variant(sa.Integer, "sqlite")

revision = "0003"
down_revision = "0001"
branch_labels = ("archive",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("stanza_id", sa.String(40), nullable=False),
        sa.Column("with_jid", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("stanza", BIGTEXT, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_archive_owner", "archive", ["host", "username", "id"])
    op.create_index("ix_archive_with", "archive", ["host", "username", "with_jid", "id"])
    op.create_index("ix_archive_time", "archive", ["host", "username", "created"])
    op.create_index("ix_archive_expiry", "archive", ["host", "created"])
    op.create_index("ux_archive_sid", "archive", ["host", "username", "stanza_id"],
                    unique=True)
    op.create_table(
        "offline_messages",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("stanza", BIGTEXT, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_offline_user", "offline_messages", ["host", "username", "id"])


def downgrade() -> None:
    op.drop_table("offline_messages")
    op.drop_table("archive")

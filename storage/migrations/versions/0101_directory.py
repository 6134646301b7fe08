"""directory: the user directory searched with XEP-0055, fed from vCards

Revision ID: 0101
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
FIELDS = ("fn", "nick", "given", "family", "email")

revision = "0101"
down_revision = "0001"
branch_labels = ("directory",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        *(sa.Column(f, sa.Text, nullable=True) for f in FIELDS),
        *(sa.Column(f"{f}_key", sa.String(255), nullable=False) for f in FIELDS),
        **MYSQL,
    )
    for f in FIELDS:
        op.create_index(f"ix_directory_{f}", "directory", ["host", f"{f}_key"])


def downgrade() -> None:
    for f in FIELDS:
        op.drop_index(f"ix_directory_{f}", table_name="directory")
    op.drop_table("directory")

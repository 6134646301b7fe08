"""account state: disabled accounts and the last login time (XEP-0133)

Revision ID: 0601
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0601"
down_revision = "0001"
branch_labels = ("account_state",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("disabled", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_login", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("last_login")
        batch.drop_column("disabled")

"""archive: the message 'id' of each entry, for XEP-0424 retractions

Revision ID: 0801
Revises: 0003

XEP-0424 §5.1: a one-to-one retraction names the message it retracts by that message's 'id'
attribute, so a user's archive keeps it (indexed) to find the entry to turn into a
tombstone. Entries archived before this revision have none: they cannot be found by a
retraction (the retraction itself is still archived and delivered).
"""

import sqlalchemy as sa
from alembic import op

revision = "0801"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("archive", sa.Column("message_id", sa.String(255), nullable=True))
    op.create_index("ix_archive_msgid", "archive", ["host", "username", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_archive_msgid", "archive")
    op.drop_column("archive", "message_id")

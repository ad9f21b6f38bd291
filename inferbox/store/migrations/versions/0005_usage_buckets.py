"""usage buckets: a publication's calls per minute, for the console's charts

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_buckets",
        sa.Column("publication_id", sa.Integer, primary_key=True),
        sa.Column("start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("unauthorized", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rate_limited", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_usage_buckets_start", "usage_buckets", ["start"])


def downgrade() -> None:
    op.drop_index("ix_usage_buckets_start", "usage_buckets")
    op.drop_table("usage_buckets")

"""model args: a framework's options for a model (huggingface's task)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: the models made before it have no options, which reads as `{}`.
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("args", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("args")

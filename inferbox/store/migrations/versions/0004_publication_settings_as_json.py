"""publication limits and authentication as JSON, named as the API names them

Revision ID: 0004
Revises: 0003

The four limit columns and the two authentication columns become `rate_limiting` and
`authentication`, JSON objects with the spec's field names (see control/publish_config.py), so that a
new limit is a new field there rather than a new column. Plain ADD and DROP COLUMN (SQLite 3.35 has
both): a batch rebuild of the table would cascade-delete its keys and usage on SQLite.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LIMITS = {
    "requests_per_minute": "requestsPerMinute",
    "requests_per_hour": "requestsPerHour",
    "tokens_per_hour": "tokensPerHour",
    "burst_limit": "burstLimit",
}
AUTHENTICATION = {"require_api_key": "requireApiKey", "allowed_tenants": "allowedTenants"}


def upgrade() -> None:
    op.add_column("publications", sa.Column("rate_limiting", sa.JSON(), nullable=True))
    op.add_column("publications", sa.Column("authentication", sa.JSON(), nullable=True))
    publications = sa.table(
        "publications",
        sa.column("id", sa.Integer()),
        sa.column("rate_limiting", sa.JSON()),
        sa.column("authentication", sa.JSON()),
        *(sa.column(c, sa.Integer()) for c in LIMITS),
        sa.column("require_api_key", sa.Boolean()),
        sa.column("allowed_tenants", sa.JSON()),
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(publications)).mappings().all():
        bind.execute(
            publications.update()
            .where(publications.c.id == row["id"])
            .values(
                rate_limiting={name: row[column] for column, name in LIMITS.items()},
                authentication={
                    "requireApiKey": bool(row["require_api_key"]),
                    "allowedTenants": list(row["allowed_tenants"] or []),
                },
            )
        )
    for column in (*LIMITS, *AUTHENTICATION):
        op.drop_column("publications", column)


def downgrade() -> None:
    for column in LIMITS:
        op.add_column("publications", sa.Column(column, sa.Integer(), nullable=False, server_default="1"))
    op.add_column(
        "publications", sa.Column("require_api_key", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column(
        "publications", sa.Column("allowed_tenants", sa.JSON(), nullable=False, server_default="[]")
    )
    publications = sa.table(
        "publications",
        sa.column("id", sa.Integer()),
        sa.column("rate_limiting", sa.JSON()),
        sa.column("authentication", sa.JSON()),
        *(sa.column(c, sa.Integer()) for c in LIMITS),
        sa.column("require_api_key", sa.Boolean()),
        sa.column("allowed_tenants", sa.JSON()),
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(publications)).mappings().all():
        limits, auth = row["rate_limiting"] or {}, row["authentication"] or {}
        bind.execute(
            publications.update()
            .where(publications.c.id == row["id"])
            .values(
                **{column: limits.get(name, 1) for column, name in LIMITS.items()},
                require_api_key=auth.get("requireApiKey", True),
                allowed_tenants=auth.get("allowedTenants", []),
            )
        )
    op.drop_column("publications", "rate_limiting")
    op.drop_column("publications", "authentication")

"""Orders (one per booking), the outbox and the inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

from ticketing.shared.db.migration_ops import (
    create_inbox_table_v1,
    create_outbox_table_v1,
    drop_shared_tables_v1,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("booking_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_count", sa.Integer(), nullable=False),
        sa.Column("total_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        mysql_engine="InnoDB",
    )
    create_outbox_table_v1()
    create_inbox_table_v1()


def downgrade() -> None:
    drop_shared_tables_v1()
    op.drop_table("orders")

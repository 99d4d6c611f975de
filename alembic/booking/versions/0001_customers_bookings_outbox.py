"""Customers, bookings, idempotency keys, the outbox and the inbox.

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
        "customers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("address", sa.String(500), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "customer_id",
            sa.Uuid(),
            sa.ForeignKey("customers.id", name="fk_bookings_customer"),
            nullable=False,
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_count", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
        sa.Column("total_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.Column("updated_at", DATETIME(fsp=6), nullable=False),
        sa.CheckConstraint("ticket_count > 0", name="ck_bookings_ticket_count_positive"),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_bookings_customer_id_id", "bookings", ["customer_id", "id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("idem_key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("booking_id", sa.Uuid(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    create_outbox_table_v1()
    create_inbox_table_v1()


def downgrade() -> None:
    drop_shared_tables_v1()
    op.drop_table("idempotency_keys")
    op.drop_table("bookings")
    op.drop_table("customers")

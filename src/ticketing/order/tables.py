"""Order's tables (SQLAlchemy Core); migrations in ``alembic/order``."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, Uuid
from sqlalchemy.dialects.mysql import DATETIME

from ticketing.shared.inbox import inbox_table
from ticketing.shared.outbox import outbox_table

metadata = MetaData()

# One row per booking (unique): the saga's decision, CONFIRMED with an order id or REJECTED.
orders = Table(
    "orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("booking_id", Uuid, nullable=False, unique=True),
    Column("event_id", Uuid, nullable=False),
    Column("ticket_count", Integer, nullable=False),
    Column("total_price", Numeric(12, 2), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("created_at", DATETIME(fsp=6), nullable=False),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

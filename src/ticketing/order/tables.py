"""Order's tables (SQLAlchemy Core); migrations in ``alembic/order``.

The event store is the source of truth and the outbox (the relay publishes from it); ``orders``
is its projection, one row per booking's stream."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Integer, MetaData, Numeric, String, Table, Uuid

from ticketing.shared.db.columns import timestamp, uuid_key
from ticketing.shared.messaging.inbox import inbox_table
from ticketing.shared.store.table import event_store_table

metadata = MetaData()

# One row per booking (unique): the saga's decision, CONFIRMED with its order id, or REJECTED
# with its event's id and no ticket count or price (the rejection does not carry them); a
# confirmed order whose seats went back is RELEASED, with the release's reason. created_at is
# the time its verdict (its stream's first event) was recorded.
orders = Table(
    "orders",
    metadata,
    uuid_key(),
    Column("booking_id", Uuid, nullable=False, unique=True),
    Column("event_id", Uuid, nullable=False),
    Column("ticket_count", Integer, nullable=True),
    Column("total_price", Numeric(12, 2), nullable=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    timestamp("created_at"),
    CheckConstraint(
        "status <> 'CONFIRMED' OR (ticket_count IS NOT NULL AND total_price IS NOT NULL)",
        name="ck_orders_confirmed_has_tickets",
    ),
)

event_store = event_store_table(metadata)
inbox = inbox_table(metadata)

"""Inventory's tables (SQLAlchemy Core). Alembic migrations in ``alembic/inventory`` create them.

The event store is the source of truth; venues, events and reservations are its projections,
each row with its stream's ``version`` (the snapshot the next decision starts from)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
)

from ticketing.shared.db.columns import timestamp, uuid_key
from ticketing.shared.store.table import event_store_table

metadata = MetaData()

venues = Table(
    "venues",
    metadata,
    uuid_key(),
    Column("name", String(200), nullable=False),
    Column("address", String(500), nullable=False),
    Column("total_capacity", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    timestamp("created_at"),
    CheckConstraint("total_capacity > 0", name="ck_venues_total_capacity_positive"),
)

events = Table(
    "events",
    metadata,
    uuid_key(),
    Column("name", String(200), nullable=False),
    Column("venue_id", Uuid, ForeignKey("venues.id", name="fk_events_venue"), nullable=False),
    Column("total_capacity", Integer, nullable=False),
    Column("left_capacity", Integer, nullable=False),
    Column("ticket_price", Numeric(10, 2), nullable=False),
    timestamp("starts_at", nullable=True),
    Column("version", Integer, nullable=False),
    timestamp("created_at"),
    Column("max_tickets_per_customer", Integer, nullable=True),  # None: no limit
    CheckConstraint("left_capacity >= 0", name="ck_events_left_capacity_not_negative"),
    CheckConstraint("left_capacity <= total_capacity", name="ck_events_left_within_total"),
    CheckConstraint("ticket_price >= 0", name="ck_events_ticket_price_not_negative"),
    CheckConstraint(
        "max_tickets_per_customer IS NULL OR max_tickets_per_customer > 0",
        name="ck_events_max_tickets_per_customer_positive",
    ),
)

# No foreign key to events on purpose: the FK check would take a shared lock on the event row
# before the seat update takes an exclusive one, and concurrent reservations would deadlock.
# A released reservation keeps its row (its booking id's answer), marked by the release.
reservations = Table(
    "reservations",
    metadata,
    uuid_key("booking_id"),
    Column("event_id", Uuid, nullable=False),
    Column("ticket_count", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("left_capacity", Integer, nullable=False),
    timestamp("created_at"),
    Column("customer_id", Uuid, nullable=True),  # None: recorded before limits, or nobody's
    timestamp("released_at", nullable=True),
    Column("release_reason", String(16), nullable=True),
    Column("release_left_capacity", Integer, nullable=True),  # the event's, after the release
    Index("ix_reservations_event_id", "event_id"),
    # The seats a customer holds at an event, counted when the event sets a limit.
    Index("ix_reservations_customer_event", "customer_id", "event_id"),
    CheckConstraint("ticket_count > 0", name="ck_reservations_ticket_count_positive"),
    CheckConstraint(
        "released_at IS NULL OR (status = 'reserved' AND release_reason IS NOT NULL"
        " AND release_left_capacity IS NOT NULL)",
        name="ck_reservations_release_of_reserved",
    ),
)

event_store = event_store_table(metadata)

"""Venues, events with capacity, and one reservation per booking id.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "venues",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("total_capacity", sa.Integer(), nullable=False),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.CheckConstraint("total_capacity > 0", name="ck_venues_total_capacity_positive"),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column(
            "venue_id",
            sa.Uuid(),
            sa.ForeignKey("venues.id", name="fk_events_venue"),
            nullable=False,
        ),
        sa.Column("total_capacity", sa.Integer(), nullable=False),
        sa.Column("left_capacity", sa.Integer(), nullable=False),
        sa.Column("ticket_price", sa.Numeric(10, 2), nullable=False),
        sa.Column("starts_at", DATETIME(fsp=6), nullable=True),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.CheckConstraint("left_capacity >= 0", name="ck_events_left_capacity_not_negative"),
        sa.CheckConstraint("left_capacity <= total_capacity", name="ck_events_left_within_total"),
        sa.CheckConstraint("ticket_price >= 0", name="ck_events_ticket_price_not_negative"),
        mysql_engine="InnoDB",
    )
    # No foreign key to events: its check would share-lock the event row ahead of the
    # conditional UPDATE and deadlock concurrent reservations (see ticketing.inventory.tables).
    op.create_table(
        "reservations",
        sa.Column("booking_id", sa.Uuid(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("left_capacity", sa.Integer(), nullable=False),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.CheckConstraint("ticket_count > 0", name="ck_reservations_ticket_count_positive"),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_reservations_event_id", "reservations", ["event_id"])


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("events")
    op.drop_table("venues")

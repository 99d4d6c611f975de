"""Limits per customer and releases of seats (issue 19): an event's
``max_tickets_per_customer``; a reservation's customer and its release.

Existing events have no limit and existing reservations name no customer and were never
released, exactly what their stored events (upcast to the new shapes) say: nothing is
backfilled. Each table changes in one ``ALTER TABLE`` (MariaDB commits each DDL statement,
and one statement is all or nothing), so a run that stopped between the two tables finishes
when run again. The downgrade drops the columns; it is for a database that recorded no limit
or release yet (the events of those stay in the store, and the older code cannot read them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADD_LIMIT = (
    "ALTER TABLE events ADD COLUMN max_tickets_per_customer INTEGER NULL, "
    "ADD CONSTRAINT ck_events_max_tickets_per_customer_positive "
    "CHECK (max_tickets_per_customer IS NULL OR max_tickets_per_customer > 0)"
)
ADD_RELEASE = (
    "ALTER TABLE reservations ADD COLUMN customer_id UUID NULL, "
    "ADD COLUMN released_at DATETIME(6) NULL, "
    "ADD COLUMN release_reason VARCHAR(16) NULL, "
    "ADD COLUMN release_left_capacity INTEGER NULL, "
    "ADD INDEX ix_reservations_customer_event (customer_id, event_id), "
    "ADD CONSTRAINT ck_reservations_release_of_reserved CHECK (released_at IS NULL OR "
    "(status = 'reserved' AND release_reason IS NOT NULL AND release_left_capacity IS NOT NULL))"
)
DROP_LIMIT = (
    "ALTER TABLE events DROP CONSTRAINT ck_events_max_tickets_per_customer_positive, "
    "DROP COLUMN max_tickets_per_customer"
)
DROP_RELEASE = (
    "ALTER TABLE reservations DROP CONSTRAINT ck_reservations_release_of_reserved, "
    "DROP INDEX ix_reservations_customer_event, DROP COLUMN release_left_capacity, "
    "DROP COLUMN release_reason, DROP COLUMN released_at, DROP COLUMN customer_id"
)


def _has(table: str, column: str) -> bool:
    inspector = sa.inspect(op.get_bind())
    return column in {c["name"] for c in inspector.get_columns(table)}


def upgrade() -> None:
    if not _has("events", "max_tickets_per_customer"):
        op.execute(ADD_LIMIT)
    if not _has("reservations", "customer_id"):
        op.execute(ADD_RELEASE)


def downgrade() -> None:
    if _has("reservations", "customer_id"):
        op.execute(DROP_RELEASE)
    if _has("events", "max_tickets_per_customer"):
        op.execute(DROP_LIMIT)

"""The event store, and inventory's tables as its projections (issue 18, ADR 12).

Existing rows become events, so that nothing is lost on upgrade: each venue a
``VenueRegistered``, each event an ``EventScheduled``, each reservation a ``SeatsReserved`` or
``ReservationRefused`` on its event's stream. They carry the rows' own times, the actor
``migration``, no correlation, and new event ids; positions follow those times. An event's
reservations are numbered in the order they were decided, which the rows' times cannot tell
(one transaction shares a time; replicas' clocks differ): by the seats left after each
(descending), and at equal seats reservations before refusals (a reservation always leaves fewer
seats than a refusal before it saw).
``venues.version`` and ``events.version`` are set to their streams' last versions.

Run with inventory stopped. An upgrade that stopped halfway (MariaDB commits each DDL statement)
is started over when run again. The downgrade drops the store and the versions: the tables keep
the state, which is all the previous version of the code knew.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ticketing.shared.db.migration_ops import create_event_store_table_v1

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The order in which an event's reservations were decided: seats left only go down, and a
# refusal leaves them as they were, so this holds whatever the clocks of the replicas said.
DECIDED = "r.left_capacity DESC, r.status = 'insufficient', r.created_at, r.booking_id"

# The history of every row (UUIDs as JSON strings in their canonical form). Positions follow
# the times, made to grow along each stream (a replica's clock may lag another's): a stream's
# versions never go out in another order than its positions.
BACKFILL = f"""
INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type, schema_version,
                         payload, correlation_id, causation_id, actor, recorded_at)
SELECT UUID(), stream_id, stream_type, version, event_type, 1, payload, NULL, NULL,
       'migration', recorded_at
FROM (
    SELECT v.id AS stream_id, 'venue' AS stream_type, 1 AS version,
           'VenueRegistered' AS event_type,
           CONVERT(JSON_OBJECT('venue_id', LOWER(CAST(v.id AS CHAR)), 'name', v.name,
                       'address', v.address, 'total_capacity', v.total_capacity)
           USING utf8mb4) COLLATE utf8mb4_bin AS payload,
           v.created_at AS recorded_at, v.created_at AS sort_time
    FROM venues v
    UNION ALL
    SELECT e.id, 'event', 1, 'EventScheduled',
           CONVERT(JSON_OBJECT('event_id', LOWER(CAST(e.id AS CHAR)),
                       'venue_id', LOWER(CAST(e.venue_id AS CHAR)),
                       'name', e.name, 'total_capacity', e.total_capacity,
                       'ticket_price', CAST(e.ticket_price AS CHAR),
                       'starts_at', IF(e.starts_at IS NULL, NULL,
                           CONCAT(DATE_FORMAT(e.starts_at, '%Y-%m-%dT%H:%i:%s.%f'), 'Z')))
           USING utf8mb4) COLLATE utf8mb4_bin,
           e.created_at, e.created_at
    FROM events e
    UNION ALL
    SELECT r.event_id, 'event',
           1 + ROW_NUMBER() OVER (PARTITION BY r.event_id ORDER BY {DECIDED}),
           IF(r.status = 'reserved', 'SeatsReserved', 'ReservationRefused'),
           CONVERT(JSON_OBJECT('event_id', LOWER(CAST(r.event_id AS CHAR)),
                       'booking_id', LOWER(CAST(r.booking_id AS CHAR)),
                       'ticket_count', r.ticket_count, 'left_capacity', r.left_capacity)
           USING utf8mb4) COLLATE utf8mb4_bin,
           r.created_at,
           GREATEST(COALESCE(e.created_at, r.created_at),
                    MAX(r.created_at) OVER (PARTITION BY r.event_id ORDER BY {DECIDED}
                                            ROWS UNBOUNDED PRECEDING))
    FROM reservations r LEFT JOIN events e ON e.id = r.event_id
) AS history
ORDER BY sort_time, stream_type DESC, stream_id, version
"""  # noqa: S608 - no input: the migration's own SQL


def upgrade() -> None:
    _forget_an_interrupted_upgrade()
    # The store first, the columns the old code cannot write last: an upgrade stopped before
    # the end leaves tables the old code still writes, and running it again starts over.
    create_event_store_table_v1()
    op.execute(BACKFILL)
    for table in ("venues", "events"):
        op.add_column(table, sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.execute(
        "UPDATE events e SET version = 1 + "
        "(SELECT COUNT(*) FROM reservations r WHERE r.event_id = e.id)"
    )
    for table in ("venues", "events"):
        op.alter_column(table, "version", existing_type=sa.Integer(), server_default=None)


def _forget_an_interrupted_upgrade() -> None:
    """MariaDB commits each DDL statement: an upgrade (or a downgrade) that stopped halfway
    left part of what this revision makes. Drop whatever of it is there, so that the upgrade
    runs whole, or the downgrade finishes."""
    inspector = sa.inspect(op.get_bind())
    if inspector.has_table("event_store"):
        op.drop_table("event_store")
    for table in ("venues", "events"):
        if "version" in {column["name"] for column in inspector.get_columns(table)}:
            op.drop_column(table, "version")


def downgrade() -> None:
    _forget_an_interrupted_upgrade()  # the same: whatever of the store is there goes

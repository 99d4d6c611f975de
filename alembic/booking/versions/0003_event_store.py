"""The event store, which is also the outbox, and customers and bookings as its projections
(issue 18, ADR 12).

Existing rows become events, so that nothing is lost on upgrade: each customer a
``CustomerRegistered``; each booking a ``BookingRequested`` and, once settled, a
``BookingConfirmed`` or ``BookingRejected`` (at the row's ``updated_at``). A booking whose
outbox row is still there keeps that row's event id (its message id), payload, correlation id,
times and publication state, so a pending one is published by the new relay as it would have
been by the old one. A booking whose outbox row was purged (published) gets its payload
rebuilt from the row with a new message id, stored as published. Outbox rows are always
written with their booking, so none is without one. Actor ``migration``, no causation;
positions follow the times, settlements after their requests. ``bookings.version`` is set to
each stream's last version. The outbox is dropped last.

Run with booking stopped. An upgrade that stopped halfway (MariaDB commits each DDL statement)
is started over when run again, while the outbox is still there; once it is gone, the upgrade
had finished. The downgrade rebuilds the outbox from the store's published events and drops
the store and the versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ticketing.shared.db.migration_ops import (
    add_event_store_delivery_v1,
    create_event_store_table_v1,
    create_outbox_table_v1,
)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New message ids for bookings whose outbox row was purged, made once: UUID() in the backfill
# itself would give the event id and the payload's message_id two different values.
NEW_IDS = "migration_booking_message_ids"


def _iso(column: str) -> str:
    """A DATETIME as msgspec writes an aware UTC datetime."""
    return f"CONCAT(DATE_FORMAT({column}, '%Y-%m-%dT%H:%i:%s.%f'), 'Z')"


def _json(*pairs: str) -> str:
    return f"CONVERT(JSON_OBJECT({', '.join(pairs)}) USING utf8mb4) COLLATE utf8mb4_bin"


def _bin(text: str) -> str:
    """Text in one collation: the columns', the connection's and JSON's may all differ."""
    return f"CONVERT({text} USING utf8mb4) COLLATE utf8mb4_bin"


def _uuid(column: str) -> str:
    return f"LOWER(CAST({column} AS CHAR))"


# The outbox row of a booking: written with it by every earlier version, keyed by its id, and
# compared as the old code compared it (in the column's collation, which ignores case; see
# _text_as_the_tables_hold_it), so that the outbox's index serves the join.
OUTBOX_OF = (
    "o.aggregate_type = 'booking' AND o.event_type = 'BookingRequested' "
    f"AND o.aggregate_id = {_uuid('b.id')}"
)
# Outbox rows no booking accounts for: the earlier code never wrote one, and dropping the
# outbox would lose them, so the upgrade refuses to start while there are any.
UNACCOUNTED = (
    "SELECT COUNT(*) FROM outbox o WHERE NOT EXISTS "  # noqa: S608 - the migration's own SQL
    f"(SELECT 1 FROM bookings b WHERE {OUTBOX_OF})"
)
REQUESTED_PAYLOAD = _json(
    f"'message_id', {_uuid('n.event_id')}",
    f"'booking_id', {_uuid('b.id')}",
    f"'customer_id', {_uuid('b.customer_id')}",
    f"'event_id', {_uuid('b.event_id')}",
    "'ticket_count', b.ticket_count",
    "'unit_price', CAST(b.unit_price AS CHAR)",
    "'total_price', CAST(b.total_price AS CHAR)",
    f"'requested_at', {_iso('b.created_at')}",
)
SETTLED_PAYLOAD = (
    "IF(b.status = 'CONFIRMED', "
    + _json(
        f"'booking_id', {_uuid('b.id')}",
        f"'order_id', {_uuid('b.order_id')}",
        f"'confirmed_at', {_iso('b.updated_at')}",
    )
    + ", "
    + _json(
        f"'booking_id', {_uuid('b.id')}",
        "'reason', COALESCE(b.reason, 'unknown')",
        f"'rejected_at', {_iso('b.updated_at')}",
    )
    + ")"
)
NEW_ID = _bin("UUID()")
REQUESTED_AT = "COALESCE(o.created_at, b.created_at)"
CORRELATION = (
    "IF(CHAR_LENGTH(JSON_UNQUOTE(JSON_EXTRACT(o.headers, '$.correlation_id'))) <= 128, "
    "JSON_UNQUOTE(JSON_EXTRACT(o.headers, '$.correlation_id')), NULL)"
)

CUSTOMER_PAYLOAD = _json(
    f"'customer_id', {_uuid('c.id')}",
    "'name', c.name",
    "'email', c.email",
    "'address', c.address",
    f"'registered_at', {_iso('c.created_at')}",
)
REQUESTED_ID = _bin(_uuid("COALESCE(o.event_id, n.event_id)"))
REQUESTED_KEY = _bin(f"COALESCE(o.message_key, {_uuid('b.event_id')})")
SETTLED_AT = f"GREATEST(b.updated_at, {REQUESTED_AT})"

# Every text column in one collation (see _bin), or the UNION refuses to mix them.
BACKFILL = f"""
INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type, schema_version,
                         payload, correlation_id, causation_id, actor, recorded_at, topic,
                         message_key, published_at)
SELECT event_id, stream_id, stream_type, version, event_type, 1, payload, correlation_id, NULL,
       'migration', recorded_at, topic, message_key, published_at
FROM (
    SELECT {NEW_ID} AS event_id, c.id AS stream_id, {_bin("'customer'")} AS stream_type,
           1 AS version, {_bin("'CustomerRegistered'")} AS event_type, {CUSTOMER_PAYLOAD}
           AS payload, {_bin("NULL")} AS correlation_id, c.created_at AS recorded_at,
           {_bin("NULL")} AS topic, {_bin("NULL")} AS message_key,
           c.created_at AS published_at, 0 AS outbox_id
    FROM customers c
    UNION ALL
    SELECT {REQUESTED_ID}, b.id, {_bin("'booking'")}, 1, {_bin("'BookingRequested'")},
           {_bin(f"COALESCE(o.payload, {REQUESTED_PAYLOAD})")}, {_bin(CORRELATION)},
           {REQUESTED_AT}, {_bin("'ticketing.bookings'")}, {REQUESTED_KEY},
           IF(o.id IS NULL, b.created_at, o.published_at), COALESCE(o.id, 0)
    FROM bookings b
    LEFT JOIN outbox o ON {OUTBOX_OF}
    LEFT JOIN {NEW_IDS} n ON n.booking_id = b.id
    UNION ALL
    SELECT {NEW_ID}, b.id, {_bin("'booking'")}, 2,
           {_bin("IF(b.status = 'CONFIRMED', 'BookingConfirmed', 'BookingRejected')")},
           {_bin(SETTLED_PAYLOAD)}, {_bin("NULL")}, {SETTLED_AT}, {_bin("NULL")},
           {_bin("NULL")}, {SETTLED_AT}, 0
    FROM bookings b
    LEFT JOIN outbox o ON {OUTBOX_OF}
    WHERE b.status <> 'PENDING'
) AS history
ORDER BY recorded_at, version, outbox_id, stream_id
"""  # noqa: S608 - no input: the migration's own SQL

OUTBOX_FROM_STORE = """
INSERT INTO outbox (event_id, aggregate_type, aggregate_id, topic, message_key, event_type,
                    payload, headers, created_at, published_at)
SELECT event_id, stream_type, LOWER(CAST(stream_id AS CHAR)), topic, message_key, event_type,
       payload,
       CONVERT(JSON_OBJECT('event_type', event_type,
                           'message_id', LOWER(CAST(event_id AS CHAR)),
                           'correlation_id',
                           COALESCE(correlation_id, LOWER(CAST(event_id AS CHAR))),
                           'content-type', 'application/json') USING utf8mb4),
       recorded_at, published_at
FROM event_store WHERE topic IS NOT NULL ORDER BY position
"""


def _text_as_the_tables_hold_it() -> None:
    """Text this migration makes of UUIDs in the database's collation, the one the tables'
    columns have: compared with them, it matches as the old code's queries did and can use
    their indexes. Until :func:`_text_as_before`."""
    op.execute(
        "SET @before_0003 = @@collation_connection, collation_connection = @@collation_database"
    )


def _text_as_before() -> None:
    op.execute("SET collation_connection = @before_0003")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("outbox"):
        return  # dropped last: an earlier run finished everything but recording the revision
    _text_as_the_tables_hold_it()
    unaccounted = op.get_bind().execute(sa.text(UNACCOUNTED)).scalar()
    if unaccounted:
        raise RuntimeError(
            f"the outbox holds {unaccounted} row(s) of no booking, which the earlier code never "
            "wrote and dropping the outbox would lose; nothing was changed"
        )
    _forget_an_interrupted_upgrade(inspector)
    op.execute(
        f"CREATE TABLE {NEW_IDS} (booking_id UUID PRIMARY KEY, event_id UUID NOT NULL) "  # noqa: S608
        f"SELECT b.id AS booking_id, UUID() AS event_id FROM bookings b "
        f"WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE {OUTBOX_OF})"
    )
    create_event_store_table_v1()
    add_event_store_delivery_v1()
    op.execute(BACKFILL)
    op.add_column(
        "bookings", sa.Column("version", sa.Integer(), nullable=False, server_default="1")
    )
    op.execute("UPDATE bookings SET version = 2 WHERE status <> 'PENDING'")
    op.alter_column("bookings", "version", existing_type=sa.Integer(), server_default=None)
    op.drop_table(NEW_IDS)
    _text_as_before()
    op.drop_table("outbox")


def _forget_an_interrupted_upgrade(inspector: sa.Inspector) -> None:
    for table in (NEW_IDS, "event_store"):
        if inspector.has_table(table):
            op.drop_table(table)
    if "version" in {column["name"] for column in inspector.get_columns("bookings")}:
        op.drop_column("bookings", "version")


def downgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("event_store"):
        return  # dropped last: an earlier run finished
    if inspector.has_table("outbox"):
        op.drop_table("outbox")
    create_outbox_table_v1()
    op.execute(OUTBOX_FROM_STORE)
    if "version" in {column["name"] for column in inspector.get_columns("bookings")}:
        op.drop_column("bookings", "version")
    op.drop_table("event_store")

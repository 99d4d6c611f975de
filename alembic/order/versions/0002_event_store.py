"""The event store, which is order's outbox and the source of its ``orders`` projection
(issue 18, ADR 12).

Each order becomes the one event of its booking's stream (stream id = the booking id, version
1), the outcome the saga published: where its outbox row is still there, that row's event id,
payload, correlation id, time and publication time (a pending one stays pending: the relay
publishes it); where retention purged it (it was published), the payload the code would have
sent, built from the row, under a new message id, stored as published at the row's time. Actor
``migration``; positions follow the times. An outbox row without its order (the 0001 code wrote
both in one transaction) gets its order row from its payload, so that nothing is lost.

The projection then follows its events: a rejected order's id becomes its event's id, every
``created_at`` its event's time, and a rejection has no ticket count or price (its event does not
carry them: the booking keeps what was asked), so those columns become nullable. Then the
outbox is dropped.

Run with order stopped. MariaDB commits each DDL statement: an upgrade that stopped halfway is
started over when run again (the outbox is dropped last; once it is gone, the store is
complete). The downgrade recreates the outbox from the published events and drops the store;
the ``orders`` rows stay as they are, and the columns stay nullable (the 0001 code writes both).

Revision ID: 0002
Revises: 0001
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

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDERS_TOPIC = "ticketing.orders"
CHECK = "ck_orders_confirmed_has_tickets"


def _uuid(column: str) -> str:
    """A UUID column as msgspec writes a UUID: its canonical lower-case text."""
    return f"LOWER(CAST({column} AS CHAR))"


def _time(column: str) -> str:
    """A naive UTC DATETIME(6) as msgspec writes an aware UTC datetime (no fraction when it is
    zero)."""
    return (
        f"CONCAT(DATE_FORMAT({column}, IF(MICROSECOND({column}) = 0, "
        f"'%Y-%m-%dT%H:%i:%s', '%Y-%m-%dT%H:%i:%s.%f')), 'Z')"
    )


def _json(*pairs: str) -> str:
    """A JSON object as msgspec writes it: keys in the order given, no spaces."""
    return (
        f"CONVERT(JSON_COMPACT(JSON_OBJECT({', '.join(pairs)})) USING utf8mb4) COLLATE utf8mb4_bin"
    )


def _correlation(headers: str, message_id: str) -> str:
    """The correlation id an outbox row's headers carry, when the store's column can hold it;
    NULL when it is the message's own id (the 0001 code wrote that when there was none)."""
    found = f"NULLIF(JSON_VALUE({headers}, '$.correlation_id'), {_uuid(message_id)})"
    return f"IF(CHAR_LENGTH({found}) <= 128, {found}, NULL)"


# The payloads the 0001 code published (contracts.events), built from an orders row (o) and
# the event's own id (s.event_id), with the row's time as the decision's.
CONFIRMED = _json(
    f"'message_id', {_uuid('s.event_id')}",
    f"'order_id', {_uuid('o.id')}",
    f"'booking_id', {_uuid('o.booking_id')}",
    f"'event_id', {_uuid('o.event_id')}",
    "'ticket_count', o.ticket_count",
    "'total_price', CAST(o.total_price AS CHAR)",
    f"'confirmed_at', {_time('o.created_at')}",
)
REJECTED = _json(
    f"'message_id', {_uuid('s.event_id')}",
    f"'booking_id', {_uuid('o.booking_id')}",
    f"'event_id', {_uuid('o.event_id')}",
    "'reason', o.reason",
    f"'rejected_at', {_time('o.created_at')}",
)

# An outbox row of an order, joined to the order's row (the outbox keys it by booking id).
OUTBOX_OF_ORDER = f"b.aggregate_type = 'order' AND b.aggregate_id = {_uuid('o.booking_id')}"

# Orders of outbox rows that have none (impossible with the 0001 code), recovered from the
# payload; the order is looked up by the booking id as a UUID, on its index.
ORDERS_OF_LONE_OUTBOX_ROWS = """
INSERT INTO orders (id, booking_id, event_id, ticket_count, total_price, status, reason,
                    created_at)
SELECT IF(b.event_type = 'OrderConfirmed', JSON_VALUE(b.payload, '$.order_id'), b.event_id),
       b.aggregate_id, JSON_VALUE(b.payload, '$.event_id'),
       IF(b.event_type = 'OrderConfirmed', JSON_VALUE(b.payload, '$.ticket_count'), NULL),
       IF(b.event_type = 'OrderConfirmed', JSON_VALUE(b.payload, '$.total_price'), NULL),
       IF(b.event_type = 'OrderConfirmed', 'CONFIRMED', 'REJECTED'),
       IF(b.event_type = 'OrderConfirmed', NULL, JSON_VALUE(b.payload, '$.reason')),
       b.created_at
FROM outbox b
WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.booking_id = b.aggregate_id)
ORDER BY b.id
"""

# One event per order, in the order of the times (then of the outbox, then of the bookings);
# the payloads of purged rows are written next, once each event has its id.
EVENTS = f"""
INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type, schema_version,
                         payload, correlation_id, causation_id, actor, recorded_at, topic,
                         message_key, published_at)
SELECT COALESCE(b.event_id, UUID()), o.booking_id, 'order', 1,
       IF(o.status = 'CONFIRMED', 'OrderConfirmed', 'OrderRejected'), 1,
       COALESCE(b.payload, ''), {_correlation("b.headers", "b.event_id")}, NULL, 'migration',
       COALESCE(b.created_at, o.created_at), '{ORDERS_TOPIC}', {_uuid("o.booking_id")},
       IF(b.id IS NULL, o.created_at, b.published_at)
FROM orders o LEFT JOIN outbox b ON {OUTBOX_OF_ORDER}
ORDER BY COALESCE(b.created_at, o.created_at), b.id, o.booking_id
"""  # noqa: S608 - no input: the migration's own SQL

PURGED_PAYLOADS = f"""
UPDATE event_store s JOIN orders o ON o.booking_id = s.stream_id
SET s.payload = IF(o.status = 'CONFIRMED', {CONFIRMED}, {REJECTED})
WHERE s.payload = ''
"""  # noqa: S608

# The projection as the events say it.
ORDERS_FROM_EVENTS = """
UPDATE orders o JOIN event_store s ON s.stream_id = o.booking_id
SET o.id = IF(o.status = 'REJECTED', s.event_id, o.id),
    o.ticket_count = IF(o.status = 'REJECTED', NULL, o.ticket_count),
    o.total_price = IF(o.status = 'REJECTED', NULL, o.total_price),
    o.created_at = s.recorded_at
"""

# What the 0001 code would not have written, and this upgrade cannot turn into events.
UNEXPECTED = {
    "outbox rows that are no outcome of an order": """
        SELECT COUNT(*) FROM outbox
        WHERE aggregate_type <> 'order' OR event_type NOT IN ('OrderConfirmed', 'OrderRejected')
           OR topic <> 'ticketing.orders' OR message_key <> aggregate_id""",
    "bookings with more than one outbox row": """
        SELECT COUNT(*) FROM (SELECT aggregate_id FROM outbox GROUP BY aggregate_id
                              HAVING COUNT(*) > 1) AS repeated""",
    "outbox rows whose event type contradicts their order's status": f"""
        SELECT COUNT(*) FROM orders o JOIN outbox b ON {OUTBOX_OF_ORDER}
        WHERE b.event_type <> IF(o.status = 'CONFIRMED', 'OrderConfirmed', 'OrderRejected')""",  # noqa: S608
}


def _text_as_the_tables_hold_it() -> None:
    """Text this migration makes of UUIDs (CAST AS CHAR, literals) in the database's collation,
    which the tables' columns have: compared with them, it can use their indexes (and text of
    two collations cannot be compared at all). Until :func:`_text_as_before`."""
    op.execute(
        "SET @before_0002 = @@collation_connection, collation_connection = @@collation_database"
    )


def _text_as_before() -> None:
    op.execute("SET collation_connection = @before_0002")


def upgrade() -> None:
    if not _forget_an_interrupted_upgrade():
        return
    _text_as_the_tables_hold_it()
    _refuse_what_cannot_be_events()
    op.alter_column("orders", "ticket_count", existing_type=sa.Integer(), nullable=True)
    op.alter_column("orders", "total_price", existing_type=sa.Numeric(12, 2), nullable=True)
    op.execute(ORDERS_OF_LONE_OUTBOX_ROWS)
    create_event_store_table_v1()
    add_event_store_delivery_v1()
    op.execute(EVENTS)
    op.execute(PURGED_PAYLOADS)
    op.execute(ORDERS_FROM_EVENTS)
    _text_as_before()
    op.create_check_constraint(
        CHECK,
        "orders",
        "status <> 'CONFIRMED' OR (ticket_count IS NOT NULL AND total_price IS NOT NULL)",
    )
    op.drop_table("outbox")  # last: until it is gone, running the upgrade again starts over


def _forget_an_interrupted_upgrade() -> bool:
    """Whether the upgrade must run: False when one that stopped had dropped the outbox (its
    last step, so the store is complete). Otherwise what of the store or the check a stopped
    run left is dropped, so that the upgrade runs whole (what it did to ``orders`` it does
    again to the same effect)."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("outbox"):
        return False
    if inspector.has_table("event_store"):
        op.drop_table("event_store")
    if CHECK in {check["name"] for check in inspector.get_check_constraints("orders")}:
        op.drop_constraint(CHECK, "orders", type_="check")
    return True


def _refuse_what_cannot_be_events() -> None:
    bind = op.get_bind()
    found = {what: bind.execute(sa.text(query)).scalar() for what, query in UNEXPECTED.items()}
    wrong = [f"{count} {what}" for what, count in found.items() if count]
    if wrong:
        raise RuntimeError(
            "the outbox holds what the 0001 code never wrote, and dropping it would lose it: "
            + "; ".join(wrong)
        )


# The published events as the 0001 outbox held them (headers as shared.outbox.build_row
# wrote them: the correlation id is the message id when there was none).
HEADERS = _json(
    "'event_type', event_type",
    f"'message_id', {_uuid('event_id')}",
    f"'correlation_id', COALESCE(correlation_id, {_uuid('event_id')})",
    "'content-type', 'application/json'",
)
OUTBOX_FROM_EVENTS = f"""
INSERT INTO outbox (event_id, aggregate_type, aggregate_id, topic, message_key, event_type,
                    payload, headers, created_at, published_at)
SELECT event_id, 'order', {_uuid("stream_id")}, topic, message_key, event_type, payload,
       {HEADERS}, recorded_at, published_at
FROM event_store
WHERE topic IS NOT NULL
ORDER BY position
"""  # noqa: S608


def downgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("event_store"):
        return  # a downgrade that stopped had dropped the store, its last step
    if inspector.has_table("outbox"):
        op.drop_table("outbox")  # what a stopped downgrade had begun
    create_outbox_table_v1()
    _text_as_the_tables_hold_it()
    op.execute(OUTBOX_FROM_EVENTS)
    _text_as_before()
    if CHECK in {check["name"] for check in inspector.get_check_constraints("orders")}:
        op.drop_constraint(CHECK, "orders", type_="check")
    op.drop_table("event_store")

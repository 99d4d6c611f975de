"""Booking's tables (SQLAlchemy Core); migrations in ``alembic/booking``.

The event store is the source of truth (and the outbox); customers and bookings are its
projections, a booking's row with its stream's ``version``. Idempotency keys are not events:
they remember answers given, and expire."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    false,
)
from sqlalchemy.dialects.mysql import VARCHAR

from ticketing.shared.db.columns import timestamp, uuid_key
from ticketing.shared.messaging.inbox import inbox_table
from ticketing.shared.store.table import event_store_table

metadata = MetaData()

customers = Table(
    "customers",
    metadata,
    uuid_key(),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=False, unique=True),
    Column("address", String(500), nullable=True),
    timestamp("created_at"),
)

bookings = Table(
    "bookings",
    metadata,
    uuid_key(),
    Column(
        "customer_id", Uuid, ForeignKey("customers.id", name="fk_bookings_customer"), nullable=False
    ),
    Column("event_id", Uuid, nullable=False),
    Column("ticket_count", Integer, nullable=False),
    Column("unit_price", Numeric(10, 2), nullable=False),
    Column("total_price", Numeric(12, 2), nullable=False),
    Column("status", String(16), nullable=False),
    Column("order_id", Uuid, nullable=True),
    Column("reason", String(500), nullable=True),
    timestamp("created_at"),
    timestamp("updated_at"),
    Column("version", Integer, nullable=False),
    Column("hold", Boolean, nullable=False, server_default=false()),
    timestamp("expires_at", nullable=True),  # a HELD booking's
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("requested_by", Text, nullable=True),  # the client; None before issue 19
    Index("ix_bookings_customer_id_id", "customer_id", "id"),
    Index("ix_bookings_status_expires_at", "status", "expires_at"),
    CheckConstraint("ticket_count > 0", name="ck_bookings_ticket_count_positive"),
)

# A client is kept as the SHA-256 of its id (hex): a token's client id has no length limit of
# its own. An Idempotency-Key header is up to 255 characters read as Latin-1, so at most 2 bytes
# each in UTF-8.
CLIENT_DIGEST_BYTES = 64
IDEMPOTENCY_KEY_BYTES = 510


def binary_text(length: int) -> VARCHAR:
    """Text compared byte for byte: the server makes ``VARCHAR(n) CHARACTER SET binary`` a
    VARBINARY (no collation to fold case, no padding with spaces), while the driver still sends
    it as a string (bytes parameters break aiomysql 0.3 on PyMySQL 1.2)."""
    return VARCHAR(length, charset="binary")


idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # Keys are each client's own (the token's azp), so two clients never share one.
    Column("client", binary_text(CLIENT_DIGEST_BYTES), primary_key=True),
    Column("idem_key", binary_text(IDEMPOTENCY_KEY_BYTES), primary_key=True),
    # The token of the request that holds the key; a retry that takes the key over stores its own.
    Column("claim", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("booking_id", Uuid, nullable=True),
    Column("response", Text, nullable=True),
    timestamp("created_at"),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

event_store = event_store_table(metadata)
inbox = inbox_table(metadata)

"""Booking's idempotency keys: a client's key claimed by the request that holds it, the answer
recorded once given, and the key released or purged (SQLAlchemy Core on one connection). Keys
are not events: they remember answers given, and expire."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.tables import idempotency_keys
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.engine import is_duplicate_key


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """An Idempotency-Key as one request holds it: the calling client's key, and the token that
    request stored with it when it claimed the key (a retry that takes the key over stores its
    own, so the request it took the key from can tell that it no longer holds it)."""

    client: str  # the SHA-256 of the client id (client_digest)
    key: str
    token: str

    @classmethod
    def new(cls, client_id: str, key: str) -> KeyClaim:
        return cls(client_digest(client_id), key, secrets.token_hex(16))


def client_digest(client_id: str) -> str:
    """How a client is kept with its keys: a fixed-size digest, whatever its id's length."""
    return hashlib.sha256(client_id.encode()).hexdigest()


def _named_by(claim: KeyClaim) -> ColumnElement[bool]:
    """The client's row of the key ``claim`` names (compared byte for byte: the columns are
    binary strings)."""
    return and_(idempotency_keys.c.client == claim.client, idempotency_keys.c.idem_key == claim.key)


async def claim_key(conn: AsyncConnection, claim: KeyClaim, fingerprint: str) -> bool:
    """Insert the key as in flight, held by ``claim``; False when the client has it already.

    A plain ``INSERT`` rather than ``INSERT IGNORE``: IGNORE would also turn a value too long
    for its column into a truncated one, and two clients or keys could then meet.
    """
    try:
        await conn.execute(
            insert(idempotency_keys).values(
                client=claim.client,
                idem_key=claim.key,
                claim=claim.token,
                fingerprint=fingerprint,
                created_at=utcnow(),
            )
        )
    except IntegrityError as error:
        if is_duplicate_key(error):
            return False
        raise
    return True


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An Idempotency-Key as stored, whoever holds it: the body it is bound to, and the answer
    given (none while its request is in flight)."""

    fingerprint: str
    booking_id: uuid.UUID | None
    response: str | None
    claimed_at: datetime  # aware: when the request holding it claimed it


async def get_key(conn: AsyncConnection, claim: KeyClaim) -> Any:
    """The client's row of the key ``claim`` names, whoever holds it."""
    return (await conn.execute(select(idempotency_keys).where(_named_by(claim)))).first()


def stored_key(row: Any) -> StoredKey:
    return StoredKey(
        row.fingerprint, row.booking_id, row.response, row.created_at.replace(tzinfo=UTC)
    )


async def take_over_key(conn: AsyncConnection, claim: KeyClaim, held_by: str) -> bool:
    """Hand a key whose request was abandoned (still in flight, held by ``held_by``) to
    ``claim``; False when it was completed or taken over meanwhile."""
    result = await conn.execute(
        update(idempotency_keys)
        .where(
            _named_by(claim),
            idempotency_keys.c.claim == held_by,
            idempotency_keys.c.booking_id.is_(None),
        )
        .values(claim=claim.token, created_at=utcnow())
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer a request that holds its key gave: its booking and the JSON sent."""

    claim: KeyClaim
    booking_id: uuid.UUID
    response: str


def complete_keys_statement(completions: Sequence[Completion]) -> sql.Statement:
    """Record the answers of ``completions`` (not empty), each only where its request still
    holds its key: the statement changes fewer rows than ``completions`` when a retry took a
    key over. Run it in the transaction of the bookings, and check its count before the commit.
    """
    tokens = [c.claim.token for c in completions]
    whens = " ".join(["WHEN %s THEN %s"] * len(completions))
    params: list[Any] = []
    for values in ([str(c.booking_id) for c in completions], [c.response for c in completions]):
        params += [p for pair in zip(tokens, values, strict=True) for p in pair]
    for c in completions:
        params += [c.claim.client, c.claim.key, c.claim.token]
    # ORs of equalities, not a row IN list: MariaDB turns a one-row IN into a row comparison
    # that an UPDATE cannot find through the primary key, and scanned the whole table.
    held = " OR ".join(["(client = %s AND idem_key = %s AND claim = %s)"] * len(completions))
    statement = (  # only placeholders are formatted in; every value is a parameter
        "UPDATE idempotency_keys SET "  # noqa: S608
        f"booking_id = CASE claim {whens} END, response = CASE claim {whens} END "
        f"WHERE booking_id IS NULL AND ({held})"
    )
    return sql.Statement(statement, params)


async def release_key(conn: AsyncConnection, claim: KeyClaim) -> None:
    """Forget a key whose request failed, so that the client may retry it (only while this
    request holds it: a retry that took it over keeps it)."""
    await conn.execute(
        delete(idempotency_keys).where(
            _named_by(claim),
            idempotency_keys.c.claim == claim.token,
            idempotency_keys.c.booking_id.is_(None),
        )
    )


async def purge_keys(conn: AsyncConnection, older_than: timedelta) -> int:
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < utcnow() - older_than)
    )
    return int(result.rowcount)

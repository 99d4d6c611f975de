"""Booking's records in its database: the SQL adapter of the port its use cases talk to
(:class:`ticketing.booking.ports.BookingRecords`), which turns a broken unique key into
:class:`~ticketing.shared.db.unit_of_work.AlreadyRecorded`."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.booking import idempotency as keys
from ticketing.booking import repository as repo
from ticketing.booking.change_statements import (
    changed_statements,
    lock_bookings,
    lock_due_holds,
    publishes,
)
from ticketing.booking.changes import DecideChanges
from ticketing.booking.domain import CustomerRegistered, KeyInFlight, KeyTakenOver
from ticketing.booking.ports import SettleBookings
from ticketing.booking.tables import inbox
from ticketing.contracts.booking import Booking, Customer
from ticketing.contracts.history import HistoryEntry
from ticketing.shared.clock import naive_utc
from ticketing.shared.db.engine import is_duplicate_key, run_transaction
from ticketing.shared.db.group_commit import GroupCommit
from ticketing.shared.db.unit_of_work import AlreadyRecorded, UnitOfWork, in_unit_of_work
from ticketing.shared.http.history import history_page
from ticketing.shared.messaging import inbox as inbox_ops
from ticketing.shared.store.eventstore import Cause, Recorded

_encoder = msgspec.json.Encoder()


def _refuse_duplicate(error: IntegrityError) -> None:
    """Raise :class:`AlreadyRecorded` for a broken unique key (the caller re-raises the rest)."""
    if is_duplicate_key(error):
        raise AlreadyRecorded(str(error.orig)) from error


async def write_bookings(uow: UnitOfWork, new: Sequence[repo.NewBooking]) -> None:
    """Write accepted bookings, their BookingRequested events and their idempotency keys'
    answers, in one unit of work.

    The answers go first, each only where its request still holds its key, and their count is
    checked before the bookings and the ``COMMIT`` are sent (one round trip): if a retry took a
    key over, :class:`KeyTakenOver` leaves the unit uncommitted, and :class:`GroupCommit`
    writes the items of a group one by one, so that only that request fails.
    """
    now = datetime.now(UTC)
    stamped = [item.at(now) for item in new]
    bodies = [_encoder.encode(booking) for booking, _ in stamped]
    answers = [
        keys.Completion(item.idempotency_key, booking.id, body.decode())
        for item, (booking, _), body in zip(new, stamped, bodies, strict=True)
        if item.idempotency_key is not None
    ]
    if answers and await uow.write_now(keys.complete_keys_statement(answers)) != len(answers):
        raise KeyTakenOver
    requested = [(event, item.cause) for item, (_, event) in zip(new, stamped, strict=True)]
    uow.write(
        repo.add_bookings_statement([(booking, event.requested_by) for booking, event in stamped]),
        repo.requested_statement(requested, new[0].cause, naive_utc(now)),
    )
    for item, body in zip(new, bodies, strict=True):
        item.answer[:] = [body]


class SqlBookingRecords:
    """Booking's event store with its projections, its inbox and its idempotency keys; the
    bookings accepted at one moment share one transaction (:class:`GroupCommit`), after whose
    commit ``after_commit`` runs."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        consumer: str,
        after_commit: Callable[[], None] = lambda: None,
        max_group: int = 100,
    ) -> None:
        self._engine = engine
        self._consumer = consumer
        self._after_commit = after_commit
        self._writer = GroupCommit(
            engine, write_bookings, max_batch=max_group, after_commit=after_commit
        )

    # Customers -------------------------------------------------------------------------

    async def register_customer(self, event: CustomerRegistered, cause: Cause) -> Customer:
        try:
            return await in_unit_of_work(
                self._engine,
                functools.partial(repo.register_customer, event=event, cause=cause),
            )
        except IntegrityError as error:
            _refuse_duplicate(error)
            raise

    async def get_customer(self, customer_id: uuid.UUID) -> Customer | None:
        async with self._engine.connect() as conn:
            return await repo.get_customer(conn, customer_id)

    async def customer_exists(self, customer_id: uuid.UUID) -> bool:
        async with self._engine.connect() as conn:
            return await repo.customer_exists(conn, customer_id)

    # Idempotency keys --------------------------------------------------------------------

    async def claim_key(
        self,
        claim: keys.KeyClaim,
        fingerprint: str,
        take_over: Callable[[keys.StoredKey], bool],
    ) -> keys.StoredKey | None:
        # Retried whole on a deadlock: two retries that find the key taken hold shared locks
        # on its row (from their failed inserts), and when both take it over one is killed.
        async def work(conn: AsyncConnection) -> keys.StoredKey | None:
            if await keys.claim_key(conn, claim, fingerprint):
                return None
            row = await keys.get_key(conn, claim)
            if row is None:  # purged or released between the two statements: claim it again
                if await keys.claim_key(conn, claim, fingerprint):
                    return None
                raise KeyInFlight  # and claimed by another request meanwhile
            stored = keys.stored_key(row)
            if not take_over(stored):
                return stored
            if await keys.take_over_key(conn, claim, row.claim):
                return None
            # Answered, released or taken over while we looked: read it again (READ COMMITTED).
            row = await keys.get_key(conn, claim)
            return stored if row is None else keys.stored_key(row)

        return await run_transaction(self._engine, work)

    async def release_key(self, claim: keys.KeyClaim) -> None:
        await run_transaction(self._engine, lambda conn: keys.release_key(conn, claim))

    async def purge_keys(self, older_than: timedelta) -> int:
        return await run_transaction(self._engine, lambda c: keys.purge_keys(c, older_than))

    # Bookings ----------------------------------------------------------------------------

    async def add_booking(self, new: repo.NewBooking) -> bytes:
        try:
            await self._writer.write(new)
        except IntegrityError as error:
            _refuse_duplicate(error)
            raise
        return new.answer[0]

    async def settle(self, batch: SettleBookings) -> None:
        async def claim(uow: UnitOfWork) -> None:
            uow.write(inbox_ops.claim_all_statement(inbox, self._consumer, batch.message_ids))

        await self._change(batch.booking_ids, batch.decide_at, before=claim)

    async def change(self, booking_ids: Sequence[uuid.UUID], decide_at: DecideChanges) -> None:
        await self._change(booking_ids, decide_at)

    async def expire(self, limit: int, decide_at: DecideChanges) -> None:
        async def work(uow: UnitOfWork) -> bool:
            now = datetime.now(UTC)
            states = await lock_due_holds(uow.conn, naive_utc(now), limit)
            changes = decide_at(states, now) if states else []
            if changes:
                uow.write(*changed_statements(changes, naive_utc(now)))
            return publishes(changes)

        await self._run(work)

    async def _change(
        self,
        booking_ids: Sequence[uuid.UUID],
        decide_at: DecideChanges,
        *,
        before: Callable[[UnitOfWork], Awaitable[None]] | None = None,
    ) -> None:
        async def work(uow: UnitOfWork) -> bool:
            # In id order, as every locker takes them.
            states = await lock_bookings(uow.conn, sorted(set(booking_ids)))
            now = datetime.now(UTC)
            changes = decide_at(states, now)
            if before is not None:
                await before(uow)
            if changes:
                uow.write(*changed_statements(changes, naive_utc(now)))
            return publishes(changes)

        await self._run(work)

    async def _run(self, work: Callable[[UnitOfWork], Awaitable[bool]]) -> None:
        """Run ``work`` as one unit; a broken unique key is :class:`AlreadyRecorded`. When it
        recorded an event to publish, the relay is woken rather than left to its next poll."""
        try:
            published = await in_unit_of_work(self._engine, work)
        except IntegrityError as error:
            _refuse_duplicate(error)
            raise
        if published:
            self._after_commit()

    async def has_seen(self, message_id: uuid.UUID) -> bool:
        return await inbox_ops.seen(self._engine, inbox, self._consumer, message_id)

    async def get_booking(self, booking_id: uuid.UUID) -> Booking | None:
        async with self._engine.connect() as conn:
            return await repo.get_booking(conn, booking_id)

    async def list_bookings(
        self, customer_id: uuid.UUID, *, limit: int, after: uuid.UUID | None
    ) -> list[Booking]:
        async with self._engine.connect() as conn:
            return await repo.list_bookings(conn, customer_id, limit=limit, after=after)

    async def stream(self, stream_id: uuid.UUID, *, until: datetime) -> list[Recorded]:
        async with self._engine.connect() as conn:
            return await repo.STORE.stream(conn, stream_id, until=until)

    async def history(
        self, stream_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        async with self._engine.connect() as conn:
            return await history_page(conn, repo.STORE, stream_id, limit, cursor)


class SqlStatusLog:
    """What the status feed reads of booking's store (the port
    :class:`ticketing.booking.status_feed.StatusLog`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start_position(self, before: datetime) -> int:
        async with self._engine.connect() as conn:
            return await repo.last_position_before(conn, naive_utc(before))

    async def after(self, position: int, limit: int) -> list[Recorded]:
        async with self._engine.connect() as conn:
            # An event of a newer release (a rolling deployment) must not stop the feed.
            return await repo.STORE.page(conn, after=position, limit=limit, lenient=True)

    async def customers_of(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        async with self._engine.connect() as conn:
            return await repo.customers_of(conn, booking_ids)

    async def of_customer(
        self, customer_id: uuid.UUID, *, after: int, upto: int, limit: int
    ) -> list[Recorded]:
        async with self._engine.connect() as conn:
            return await repo.STORE.streams_page(
                conn,
                "SELECT id FROM bookings WHERE customer_id = %s",
                [str(customer_id)],
                after=after,
                upto=upto,
                limit=limit,
                lenient=True,
            )

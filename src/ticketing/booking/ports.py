"""The ports booking's use cases talk through (ADR 14): where they read and record, the
inventory read they make, and whom they tell of what they committed. The SQL adapters and the
in-memory stand-ins implement these."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from ticketing.booking import domain
from ticketing.booking.changes import Change, DecideChanges
from ticketing.booking.idempotency import KeyClaim, StoredKey
from ticketing.booking.repository import NewBooking
from ticketing.contracts.booking import Booking, Customer
from ticketing.contracts.history import HistoryEntry
from ticketing.contracts.inventory import Event
from ticketing.shared.store.eventstore import Cause, Recorded

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SettleBookings:
    """A batch of saga answers for :meth:`BookingRecords.settle`, as one value so that the
    port, its adapter and its stand-ins name what the call takes once."""

    message_ids: Sequence[uuid.UUID]
    booking_ids: Sequence[uuid.UUID]
    decide_at: DecideChanges


class BookingRecords(Protocol):
    """Where booking's use cases read and record (the port they need; the SQL adapter is
    :class:`ticketing.booking.records.SqlBookingRecords`). A write that breaks a unique key
    raises :class:`AlreadyRecorded` and records nothing."""

    async def register_customer(
        self, event: domain.CustomerRegistered, cause: Cause
    ) -> Customer: ...

    async def get_customer(self, customer_id: uuid.UUID) -> Customer | None: ...

    async def customer_exists(self, customer_id: uuid.UUID) -> bool: ...

    async def claim_key(
        self,
        claim: KeyClaim,
        fingerprint: str,
        take_over: Callable[[StoredKey], bool],
    ) -> StoredKey | None:
        """In one transaction: None when ``claim`` holds its key now (it was free, or its
        request is in flight and ``take_over`` says take it); otherwise the key as stored."""

    async def release_key(self, claim: KeyClaim) -> None:
        """Forget the key, only while ``claim`` holds it and it has no answer."""

    async def purge_keys(self, older_than: timedelta) -> int: ...

    async def add_booking(self, new: NewBooking) -> bytes:
        """Record the booking, its event and its key's answer; the answer's body. Raises
        :class:`KeyTakenOver` (and records nothing) when its claim no longer holds its key."""

    async def settle(self, batch: SettleBookings) -> None:
        """In one transaction: lock the batch's bookings, claim its messages, and record the
        changes its ``decide_at`` gives from the locked states (missing ones left out) at the
        time of the transaction."""

    async def change(self, booking_ids: Sequence[uuid.UUID], decide_at: DecideChanges) -> None:
        """As :meth:`settle`, with no message to claim (a request's change)."""

    async def expire(self, limit: int, decide_at: DecideChanges) -> None:
        """In one transaction: lock up to ``limit`` HELD bookings past their time, skipping
        those another transaction holds, and record the changes ``decide_at`` gives."""

    async def has_seen(self, message_id: uuid.UUID) -> bool:
        """Whether the inbox holds the message (it was applied)."""

    async def get_booking(self, booking_id: uuid.UUID) -> Booking | None: ...

    async def list_bookings(
        self, customer_id: uuid.UUID, *, limit: int, after: uuid.UUID | None
    ) -> list[Booking]: ...

    async def stream(self, stream_id: uuid.UUID, *, until: datetime) -> list[Recorded]:
        """The stream's events recorded at or before ``until``, in version order."""

    async def history(
        self, stream_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[HistoryEntry], str | None]:
        """A page of the stream's events after ``cursor``, and the next page's cursor."""


class EventLookup(Protocol):
    """The inventory read booking makes (the client over HTTP, or a stand-in)."""

    async def get_event(
        self, event_id: uuid.UUID, *, correlation_id: str | None = None
    ) -> Event: ...


class CommitObserver(Protocol):
    """Who is told of the changes once committed (the metrics, and the replica's long-poll
    waiters): every change, and the saga's settlements with the time they were decided at."""

    def committed(self, changes: Sequence[Change]) -> None: ...

    def settled(self, changes: Sequence[Change], now: datetime) -> None: ...


class CommitObservers:
    """Tells each of ``observers`` in turn (the metrics and the replica's status listeners).
    One that fails is logged and passed over: the change is committed by then, and an error
    would answer a committed confirm 500 or hand a committed batch back to be retried."""

    def __init__(self, *observers: CommitObserver) -> None:
        self._observers = observers

    def committed(self, changes: Sequence[Change]) -> None:
        for observer in self._observers:
            with _logged(observer):
                observer.committed(changes)

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        for observer in self._observers:
            with _logged(observer):
                observer.settled(changes, now)


@contextlib.contextmanager
def _logged(observer: CommitObserver) -> Iterator[None]:
    try:
        yield
    except Exception:
        log.exception("commit observer failed", observer=type(observer).__name__)


class NoCommitObserver:
    """Tells no one of the changes (a service built without metrics: tests, tools)."""

    def committed(self, changes: Sequence[Change]) -> None:
        pass

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        pass

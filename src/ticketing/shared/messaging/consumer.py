"""Running Kafka messages to completion: retries, dead-lettering, then the offset commit.

Subscribers use ``AckPolicy.MANUAL``. Messages arrive in batches. A consumer has one handler,
which takes a batch: it applies the whole batch at once (one call to each dependency, one
transaction); if that fails for a reason other than an unavailable dependency, each record is
handed to it again as a batch of one (concurrently: they concern different bookings, and the
handler is idempotent: a message applied before is a batch of one it skips). The batch's
offsets are committed only once every record's transaction has committed or the record was
safely written to the dead-letter topic. Nothing is dropped:

- a record that cannot be decoded goes to the DLQ at once;
- a handler that raises :class:`~ticketing.shared.errors.Unavailable` or loses its database is
  retried with capped backoff for as long as it takes (the dependency will come back; the
  partition waits rather than skipping ahead);
- any other error is retried ``max_attempts`` times, then the record goes to the DLQ;
- a dead-letter publish that fails is retried with capped backoff for as long as it takes;
- a batch that fails anyway (a bug, a stop) is sought back to its first record on every
  partition it spans and comes again after a capped backoff: its offsets are never committed,
  so no later commit can pass a record that was neither applied nor dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage

from ticketing.contracts.events import (
    CORRELATION_ID_HEADER,
    EVENT_TYPE_HEADER,
    EVENT_TYPES,
    MESSAGE_ID_HEADER,
)
from ticketing.shared import tracing
from ticketing.shared.cancellation import CancelledElsewhere, run_all, stop_if_cancelled, stopping
from ticketing.shared.correlation import correlation_id_bound
from ticketing.shared.db.engine import unavailable as database_unavailable
from ticketing.shared.errors import Unavailable
from ticketing.shared.messaging.offsets import commit, records_of, rewind
from ticketing.shared.store.eventstore import Cause
from ticketing.shared.tally import NO_TALLY, Tally, counting

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded event, the correlation id it travelled with, and the trace context of its
    processing (None when tracing is off): the events it causes are stored under it."""

    event: Any
    correlation_id: str | None
    traceparent: str | None = None

    def caused(self, actor: str) -> Cause:
        """The cause stored with the events decided for this message: ``actor`` (the consumer)
        acting on it, in its correlation and trace."""
        return Cause(actor).caused_by(
            str(self.event.message_id), self.correlation_id, self.traceparent
        )


BatchHandler = Callable[[Sequence[Received]], Awaitable[None]]


class PoisonMessage(Exception):
    """The message can never be processed (undecodable, unknown type)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Kafka record as the runner needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, record: Any) -> Delivery:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers={
                name: (value or b"").decode("utf-8", "replace") for name, value in record.headers
            },
        )


def decode_event(delivery: Delivery, accepted: tuple[type[Any], ...]) -> Any:
    """Decode the payload into the dataclass its ``event_type`` header names."""
    event_type = delivery.headers.get(EVENT_TYPE_HEADER, "")
    cls = EVENT_TYPES.get(event_type)
    if cls is None or cls not in accepted:
        raise PoisonMessage(f"unexpected event type {event_type!r}")
    try:
        return msgspec.json.decode(delivery.value, type=cls)
    except msgspec.DecodeError as error:
        raise PoisonMessage(f"{event_type} payload is invalid: {error}") from None


def is_transient(error: BaseException) -> bool:
    if isinstance(error, CancelledElsewhere):
        return True
    if isinstance(error, Unavailable | TimeoutError | ConnectionError):
        return True
    return database_unavailable(error)


class MessageRunner:
    def __init__(
        self,
        broker: KafkaBroker,
        *,
        dlq_topic: str,
        accepted: tuple[type[Any], ...],
        max_attempts: int = 5,
        max_backoff: float = 5.0,
        tally: Tally = NO_TALLY,
    ) -> None:
        self._broker = broker
        self._tally = tally
        self._dlq_topic = dlq_topic
        self._accepted = accepted
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff
        self._failed_in_a_row = 0
        self.dead_lettered = 0

    async def complete(self, message: KafkaMessage, handler: BatchHandler) -> None:
        """Run a delivered batch, then commit its offsets. If the run fails, every partition of
        the batch is sought back to its first record instead: the batch comes again, and no
        later commit can pass a record of it that was never applied."""
        records = records_of(message)
        try:
            await self.run_batch([Delivery.of(r) for r in records], handler)
        except BaseException as error:
            rewind(message.consumer, records)
            if not isinstance(error, Exception):
                raise  # a stop: the records come again from the last commit
            await self._pause_after(error)
            return
        self._failed_in_a_row = 0
        await commit(message)

    async def _pause_after(self, error: Exception) -> None:
        """Wait before a failed batch comes again, longer after each failure in a row, so a
        failure that persists holds its partitions back without spinning."""
        stop_if_cancelled(error)
        self._failed_in_a_row += 1
        delay = min(0.1 * 2.0 ** min(self._failed_in_a_row - 1, 16), self._max_backoff)
        log.error(
            "batch failed, its records will be delivered again",
            error=repr(error),
            failures_in_a_row=self._failed_in_a_row,
            retry_in=delay,
        )
        await asyncio.sleep(delay)

    async def run_batch(self, deliveries: list[Delivery], handler: BatchHandler) -> None:
        """Bring every record of a batch to completion (the caller commits afterwards)."""
        with (
            counting(self._tally),
            tracing.processing(deliveries) as traces,
        ):
            traced = list(zip(deliveries, traces, strict=True))
            if len(traced) > 1:
                traced = await self._run_together(traced, handler)
            await run_all([self.run(delivery, handler, trace) for delivery, trace in traced])

    async def _run_together(
        self, traced: list[tuple[Delivery, str | None]], handler: BatchHandler
    ) -> list[tuple[Delivery, str | None]]:
        """Apply the decodable records with one call; the records still to hand over one at a
        time (none, unless the batch failed for a reason other than an unavailable
        dependency)."""
        decoded: list[tuple[Delivery, str | None, Any]] = []
        for delivery, trace in traced:
            try:
                decoded.append((delivery, trace, decode_event(delivery, self._accepted)))
            except PoisonMessage as error:
                await self._dead_letter(delivery, error, attempts=1)
        received = [
            Received(event, d.headers.get(CORRELATION_ID_HEADER), trace)
            for d, trace, event in decoded
        ]
        if not received:
            return []
        failure = await self._retrying(lambda: handler(received), give_up=lambda _: True)
        if failure is None:
            return []
        log.warning("batch failed, handing its records over one at a time", error=repr(failure))
        return [(delivery, trace) for delivery, trace, _ in decoded]

    async def run(
        self, delivery: Delivery, handler: BatchHandler, traceparent: str | None = None
    ) -> None:
        """Bring one record to completion, in its own processing span's trace."""
        with (
            structlog.contextvars.bound_contextvars(
                message_id=delivery.headers.get(MESSAGE_ID_HEADER)
            ),
            correlation_id_bound(delivery.headers.get(CORRELATION_ID_HEADER)),
            tracing.resumed(traceparent),
        ):
            await self._run(delivery, handler, traceparent)

    async def _run(
        self, delivery: Delivery, handler: BatchHandler, traceparent: str | None
    ) -> None:
        try:
            alone = [
                Received(
                    decode_event(delivery, self._accepted),
                    delivery.headers.get(CORRELATION_ID_HEADER),
                    traceparent,
                )
            ]
        except PoisonMessage as error:
            await self._dead_letter(delivery, error, attempts=1)
            return
        failures = 0

        def give_up(error: Exception) -> bool:
            nonlocal failures
            failures += 1
            log.warning("handler failed", error=repr(error), attempt=failures)
            return failures >= self._max_attempts

        failure = await self._retrying(lambda: handler(alone), give_up=give_up)
        if failure is not None:
            await self._dead_letter(delivery, failure, attempts=failures)

    async def _retrying(
        self, call: Callable[[], Awaitable[None]], *, give_up: Callable[[Exception], bool]
    ) -> Exception | None:
        """Call ``call`` until it succeeds (None), with capped backoff between attempts. An
        unavailable dependency is waited out for as long as it takes; any other failure ends
        the attempts, with that error, once ``give_up`` says so."""
        delay = 0.1
        while True:
            try:
                try:
                    await call()
                except asyncio.CancelledError as cancelled:
                    if stopping():
                        raise
                    # Not our stop: the call awaited something that someone else cancelled
                    # (a shared read, a group commit). A failure like any other, so the record
                    # is retried rather than counted as done.
                    raise CancelledElsewhere from cancelled
            except Exception as error:  # noqa: BLE001 - every failure is retried or handed back
                stop_if_cancelled(error)
                if is_transient(error):
                    log.warning("dependency unavailable, retrying", error=repr(error))
                elif give_up(error):
                    return error
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
            else:
                return None

    async def _dead_letter(self, delivery: Delivery, error: BaseException, attempts: int) -> None:
        """Write the record to the DLQ, retrying for as long as it takes: its offset is committed
        only after this, so a DLQ that is away holds the partition back and loses nothing."""
        headers = {
            **tracing.without_trace_context(delivery.headers),
            "dlq_error": f"{type(error).__name__}: {error}"[:1000],
            "dlq_source_topic": delivery.topic,
            "dlq_source_partition": str(delivery.partition),
            "dlq_source_offset": str(delivery.offset),
            "dlq_attempts": str(attempts),
        }

        async def publish() -> None:
            await self._broker.publish(
                delivery.value, self._dlq_topic, key=delivery.key, headers=headers
            )

        def keep_trying(failure: Exception) -> bool:
            log.warning("dead-letter publish failed, retrying", error=repr(failure))
            return False  # a record is never dropped: its partition waits for the DLQ

        await self._retrying(publish, give_up=keep_trying)
        self.dead_lettered += 1
        self._tally.dead_letter()
        log.error("message sent to the dead-letter topic", topic=self._dlq_topic, error=str(error))

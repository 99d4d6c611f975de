"""Running one Kafka message to completion: retries, dead-lettering, then the offset commit.

Subscribers use ``AckPolicy.MANUAL`` and hand every message to :meth:`MessageRunner.run`, which
acknowledges (commits the offset) only after the handler's transaction committed, or after the
message was safely written to the dead-letter topic. Nothing is dropped silently:

- a message that cannot be decoded goes to the DLQ at once;
- a handler that raises :class:`~ticketing.shared.errors.Unavailable` or loses its database
  is retried with capped backoff for as long as it takes (the dependency will come back; the
  partition waits rather than skipping ahead);
- any other error is retried ``max_attempts`` times, then the message goes to the DLQ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage as InjectedMessage
from faststream.kafka.message import KafkaMessage
from sqlalchemy.exc import DBAPIError, OperationalError

from ticketing.contracts.events import EVENT_TYPE_HEADER, EVENT_TYPES, MESSAGE_ID_HEADER
from ticketing.shared.errors import Unavailable
from ticketing.shared.messaging import consumer_options
from ticketing.shared.settings import Settings

log = structlog.get_logger(__name__)
Handler = Callable[[Any], Awaitable[None]]


class PoisonMessage(Exception):
    """The message can never be processed (undecodable, unknown type)."""


def decode_event(message: KafkaMessage, accepted: tuple[type[Any], ...]) -> Any:
    """Decode the payload into the dataclass its ``event_type`` header names."""
    event_type = message.headers.get(EVENT_TYPE_HEADER, "")
    cls = EVENT_TYPES.get(event_type)
    if cls is None or cls not in accepted:
        raise PoisonMessage(f"unexpected event type {event_type!r}")
    try:
        return msgspec.json.decode(message.body, type=cls)
    except msgspec.DecodeError as error:
        raise PoisonMessage(f"{event_type} payload is invalid: {error}") from None


def is_transient(error: BaseException) -> bool:
    if isinstance(error, Unavailable | OperationalError | TimeoutError | ConnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class MessageRunner:
    def __init__(
        self,
        broker: KafkaBroker,
        *,
        dlq_topic: str,
        accepted: tuple[type[Any], ...],
        max_attempts: int = 5,
        max_backoff: float = 5.0,
    ) -> None:
        self._broker = broker
        self._dlq_topic = dlq_topic
        self._accepted = accepted
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff
        self.dead_lettered = 0

    async def run(self, message: KafkaMessage, handler: Handler) -> None:
        raw = message.raw_message
        with structlog.contextvars.bound_contextvars(
            message_id=message.headers.get(MESSAGE_ID_HEADER),
            correlation_id=message.correlation_id,
        ):
            await self._run(message, handler)
        log.debug("message done", offset=getattr(raw, "offset", None))
        await message.ack()

    async def _run(self, message: KafkaMessage, handler: Handler) -> None:
        try:
            event = decode_event(message, self._accepted)
        except PoisonMessage as error:
            await self._dead_letter(message, error, attempts=1)
            return
        failures, delay = 0, 0.1
        while True:
            try:
                await handler(event)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure is retried or dead-lettered
                if is_transient(error):
                    log.warning(
                        "dependency unavailable, retrying", error=repr(error), retry_in=delay
                    )
                else:
                    failures += 1
                    log.warning("handler failed", error=repr(error), attempt=failures)
                    if failures >= self._max_attempts:
                        await self._dead_letter(message, error, attempts=failures)
                        return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
            else:
                return

    async def _dead_letter(
        self, message: KafkaMessage, error: BaseException, attempts: int
    ) -> None:
        raw: Any = message.raw_message
        headers = {
            **message.headers,
            "dlq_error": f"{type(error).__name__}: {error}"[:1000],
            "dlq_source_topic": str(getattr(raw, "topic", "")),
            "dlq_source_partition": str(getattr(raw, "partition", "")),
            "dlq_source_offset": str(getattr(raw, "offset", "")),
            "dlq_attempts": str(attempts),
        }
        await self._broker.publish(
            message.body, self._dlq_topic, key=getattr(raw, "key", None), headers=headers
        )
        self.dead_lettered += 1
        log.error("message sent to the dead-letter topic", topic=self._dlq_topic, error=str(error))


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    *,
    topic: str,
    group: str,
    dlq_topic: str,
    accepted: tuple[type[Any], ...],
    handle: Handler,
    description: str,
) -> MessageRunner:
    """Subscribe ``group`` to ``topic``: each message is decoded to one of ``accepted`` and
    handed to ``handle`` by a :class:`MessageRunner`, which commits the offset afterwards."""
    runner = MessageRunner(
        broker,
        dlq_topic=dlq_topic,
        accepted=accepted,
        max_attempts=settings.consumer_max_attempts,
    )

    @broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.MANUAL,
        title=f"{group}:{topic}",
        description=description,
        **consumer_options(settings),
    )
    async def on_message(body: Any, message: InjectedMessage) -> None:
        del body  # decoded by the runner into the event dataclass
        await runner.run(message, handle)

    return runner

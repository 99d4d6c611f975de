"""Booking's status push over HTTP: the customers' event streams on the replica's
:class:`~ticketing.booking.status_feed.StatusFeed`, and the per-client limit they share with the
long-poll, whose wait is :meth:`~ticketing.booking.status_listeners.StatusListeners.until_settled`
(issue 20, ADR 16)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import msgspec

from ticketing.booking.status_feed import StatusFeed
from ticketing.booking.status_listeners import OpenLimit
from ticketing.contracts.booking import BookingStatusChange
from ticketing.shared.errors import RateLimited
from ticketing.shared.settings import Settings

_encoder = msgspec.json.Encoder()
RETRY_MS = 1000  # how soon a disconnected EventSource reconnects


@dataclass
class StatusPush:
    feed: StatusFeed
    limit: OpenLimit
    heartbeat_seconds: float
    buffer_events: int

    @classmethod
    def create(cls, feed: StatusFeed, settings: Settings) -> StatusPush:
        return cls(
            feed,
            OpenLimit(settings.status_max_open_per_client),
            settings.stream_heartbeat_seconds,
            settings.stream_buffer_events,
        )

    async def stream(
        self, customer_id: uuid.UUID, client: str, after: int | None
    ) -> AsyncGenerator[bytes, None]:
        """The customer's changes as server-sent events: those after ``after`` from the store
        (none when it is None), then each as it happens; a comment as the heartbeat. Ends when
        the reader fell ``buffer_events`` behind: it resumes with ``Last-Event-ID``."""
        try:
            self.limit.acquire(client)
        except RateLimited:
            # Another stream of the client's opened since the check: this one ends at once.
            yield b": too many open waits and streams for this client\n\n"
            return
        # A reader too slow for the buffer is disconnected: its task is cancelled, even while
        # it waits for the reader to take what was sent (an unread socket holds it there).
        # Cancelled there, outside this generator, the task leaves it unclosed (Litestar never
        # closes it; a garbage collection may, much later): the cut-off frees the slot itself.
        task = asyncio.current_task()
        assert task is not None, "a stream is read by a task"
        held = True

        def free() -> None:
            nonlocal held
            if held:
                held = False
                self.limit.release(client)

        def cut_off() -> None:
            free()
            task.cancel()

        live, mark = self.feed.subscribe(customer_id, self.buffer_events, on_overflow=cut_off)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            last = mark if after is None else after
            async for position, change in self.feed.history(customer_id, after=last, upto=mark):
                yield frame(position, change)
                last = position
            # The cut-off's cancellation may be lost (Python 3.11's wait_for swallows one that
            # comes with the change it waits for): the stream ends here too.
            while not live.overflowed:
                try:
                    position, change = await asyncio.wait_for(
                        live.changes.get(), self.heartbeat_seconds
                    )
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if position > last:  # the store told it already
                    yield frame(position, change)
                    last = position
        finally:
            self.feed.unsubscribe(live)  # the feed drops an overflowed one itself
            free()


def frame(position: int, change: BookingStatusChange) -> bytes:
    """One server-sent event."""
    return b"id: %d\nevent: booking\ndata: %s\n\n" % (position, _encoder.encode(change))

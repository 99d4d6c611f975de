"""``ticketing events export``: a service's events as JSON Lines, oldest first."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.cli.arguments import moment
from ticketing.shared.clock import utcnow
from ticketing.shared.db.engine import create_engine, mysql_error_code
from ticketing.shared.settings import DATABASE_SERVICES, ServiceName, Settings
from ticketing.shared.store.eventstore import EventStore

EVENT_SOURCED = DATABASE_SERVICES  # every service with a database keeps its events there
PAGE = 1000
WAIT_SECONDS = 30.0
SETTLE_SECONDS = 10.0
NO_PROCESS_PRIVILEGE = 1227


def stores() -> dict[ServiceName, EventStore]:
    """The event store of every event-sourced service."""
    from ticketing.booking import repository as booking
    from ticketing.inventory import repository as inventory
    from ticketing.order import repository as order

    return {"inventory": inventory.STORE, "booking": booking.STORE, "order": order.STORE}


class WritersStillOpen(Exception):
    """Transactions that may record events before the export's end are still open."""


async def wait_for_writers(
    conn: AsyncConnection, until: datetime, *, seconds: float = WAIT_SECONDS
) -> None:
    """Wait until every transaction that began before ``until`` (naive UTC) has ended.

    An event's time is taken before its transaction commits, so an export of a range that
    had just ended would miss the events still committing, and a later export ``--since``
    that moment would not take them either. The open transactions are read from
    ``information_schema.innodb_trx``, which needs the PROCESS privilege; without it the
    export waits until ``SETTLE_SECONDS`` after ``until`` instead (the services' transactions
    last milliseconds)."""
    # innodb_trx gives times in the server's own zone: compare in it, whatever the session's.
    await conn.execute(text("SET time_zone = 'SYSTEM'"))
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            open_before = await conn.scalar(
                text(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx "
                    "WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_started < TIMESTAMPADD("
                    "SECOND, TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) + 1, :until)"
                ),
                {"until": until},
            )
        except DBAPIError as error:
            if mysql_error_code(error) != NO_PROCESS_PRIVILEGE:
                raise
            await conn.rollback()
            await _settle(until)
            return
        await conn.rollback()  # the next look must not read the snapshot of this one
        if not open_before:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise WritersStillOpen(
                f"{open_before} transaction(s) begun before --until are still open after "
                f"{seconds:.0f} s: their events would be missing; try again later"
            )
        await asyncio.sleep(0.2)


async def _settle(until: datetime) -> None:
    """Without a view of the open transactions, wait until ``until`` is long enough past."""
    left = (until - utcnow()).total_seconds() + SETTLE_SECONDS
    if left > 0:
        print(
            f"ticketing: no PROCESS privilege to see open transactions; waiting {left:.0f} s "
            "for the ones begun before --until",
            file=sys.stderr,
        )
        await asyncio.sleep(left)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = commands.add_parser(
        "events",
        help="read the event stores (the services' source of truth)",
        description="Every change of an event-sourced service is an event in its store; "
        "events are never changed or deleted.",
    )
    actions = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write events as JSON Lines, oldest first",
        description="One JSON object per line: position, stream_id, stream_type, version, "
        "event_type, schema_version, recorded_at, actor, correlation_id, causation_id and data "
        "(the payload in its current shape).",
    )
    export.add_argument("--service", choices=EVENT_SOURCED, required=True)
    export.add_argument("--stream", type=uuid.UUID, help="only this stream (an aggregate's id)")
    export.add_argument("--type", dest="event_type", help="only this event type")
    export.add_argument("--since", type=moment, help="recorded at or after (ISO time or age)")
    export.add_argument(
        "--until",
        type=moment,
        help="recorded before (ISO time or age); waits for transactions begun before it to end, "
        "so that two exports split at one moment together hold every event",
    )
    export.add_argument("--output", "-o", help="a file to write (default: standard output)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.output is None:
            count = asyncio.run(_export(settings, args, sys.stdout.buffer))
        else:
            with open(args.output, "wb") as out:
                count = asyncio.run(_export(settings, args, out))
    except WritersStillOpen as error:
        print(f"ticketing: {error}", file=sys.stderr)
        return 1
    print(f"{args.service}: {count} event(s) exported", file=sys.stderr)
    return 0


async def _export(settings: Settings, args: argparse.Namespace, out: BinaryIO) -> int:
    store = stores()[args.service]
    engine = create_engine(settings, args.service)
    count, after = 0, 0
    try:
        async with engine.connect() as conn:
            if args.until is not None:
                await wait_for_writers(conn, args.until)
            while page := await store.page(
                conn,
                after=after,
                limit=PAGE,
                stream_id=args.stream,
                event_type=args.event_type,
                since=args.since,
                until=args.until,
            ):
                out.write(b"".join(store.as_json(recorded) + b"\n" for recorded in page))
                count += len(page)
                after = page[-1].position
    finally:
        await engine.dispose()
    out.flush()
    return count

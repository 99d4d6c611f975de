"""``ticketing events export``: a service's events as JSON Lines, oldest first."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import BinaryIO

from ticketing.shared.db import create_engine
from ticketing.shared.eventstore import EventStore
from ticketing.shared.outbox_admin import parse_moment
from ticketing.shared.settings import ServiceName, Settings

EVENT_SOURCED: tuple[ServiceName, ...] = ("inventory",)
PAGE = 1000


def stores() -> dict[ServiceName, EventStore]:
    """The event store of every event-sourced service."""
    from ticketing.inventory import repository as inventory

    return {"inventory": inventory.STORE}


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
    export.add_argument("--since", type=_moment, help="recorded at or after (ISO time or age)")
    export.add_argument("--until", type=_moment, help="recorded before (ISO time or age)")
    export.add_argument("--output", "-o", help="a file to write (default: standard output)")


def _moment(text: str) -> object:
    try:
        return parse_moment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.output is None:
        count = asyncio.run(_export(settings, args, sys.stdout.buffer))
    else:
        with open(args.output, "wb") as out:
            count = asyncio.run(_export(settings, args, out))
    print(f"{args.service}: {count} event(s) exported", file=sys.stderr)
    return 0


async def _export(settings: Settings, args: argparse.Namespace, out: BinaryIO) -> int:
    store = stores()[args.service]
    engine = create_engine(settings, args.service)
    count, after = 0, 0
    try:
        async with engine.connect() as conn:
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

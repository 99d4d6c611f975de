"""``ticketing outbox``: status and replay of the services' outboxes (their event stores)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import TextIO, cast

from ticketing.cli.arguments import moment
from ticketing.shared import tracing
from ticketing.shared.db.engine import create_engine
from ticketing.shared.messaging.outbox_admin import (
    ReplayFilter,
    count_replayable,
    replayable_rows,
    status,
)
from ticketing.shared.messaging.publishing import create_producer, send_rows, start_producer
from ticketing.shared.settings import ServiceName, Settings

OUTBOX_SERVICES: tuple[ServiceName, ...] = ("booking", "order")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    outbox = commands.add_parser(
        "outbox",
        help="inspect and replay the outboxes (the published events of the event stores)",
        description="A service's event store is its outbox: the relay publishes the events "
        "of the published types, and every event stays in the store for good. Replay "
        "re-publishes events with their original message ids; consumers deduplicate, so a "
        "replay never applies an effect twice.",
    )
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")

    show = actions.add_parser(
        "status", help="events waiting to be published, the oldest one's age, the last published"
    )
    show.add_argument("--service", choices=OUTBOX_SERVICES, help="one service (default: all)")
    show.add_argument("--json", action="store_true", help="print JSON")

    replay = actions.add_parser(
        "replay", help="re-publish already-published events with their original message ids"
    )
    replay.add_argument("--service", choices=OUTBOX_SERVICES, required=True)
    replay.add_argument("--since", type=moment, help="recorded at or after (ISO time or age: 2h)")
    replay.add_argument("--until", type=moment, help="recorded before (ISO time or age: 30m)")
    replay.add_argument(
        "--aggregate-id", type=uuid.UUID, help="only events of this stream (e.g. a booking id)"
    )
    replay.add_argument("--event-type", help="only events of this type (e.g. BookingRequested)")
    replay.add_argument("--dry-run", action="store_true", help="count what would be replayed")


def run(settings: Settings, args: argparse.Namespace) -> int:
    command = args.outbox_command
    if command == "status":
        services: list[ServiceName] = [args.service] if args.service else list(OUTBOX_SERVICES)
        return asyncio.run(_status(settings, services, as_json=args.json))
    aggregate = None if args.aggregate_id is None else str(args.aggregate_id)
    selection = ReplayFilter(args.since, args.until, aggregate, args.event_type)
    try:
        # A replayed event is sent in the trace it was recorded in, as the relay sent it.
        tracing.configure(f"{args.service}-replay")
    except tracing.TracingConfigError as error:
        print(f"ticketing outbox replay: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_replay(settings, args.service, selection, dry_run=args.dry_run))
    finally:
        tracing.shutdown()  # exports what the replay traced before the process ends


async def _status(settings: Settings, services: list[ServiceName], *, as_json: bool) -> int:
    report: dict[str, dict[str, object]] = {}
    for service in services:
        engine = create_engine(settings, service)
        try:
            state = await status(engine)
        finally:
            await engine.dispose()
        report[service] = {
            "total": state.total,
            "pending": state.pending,
            "oldest_pending_age_seconds": state.oldest_pending_age_seconds,
            "last_published_position": state.last_published_position,
            "last_published_at": None
            if state.last_published_at is None
            else state.last_published_at.isoformat() + "Z",
        }
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'service':<10}{'total':>10}{'pending':>10}{'oldest pending':>16}  last published")
    for name, row in report.items():
        age = row["oldest_pending_age_seconds"]
        age_text = "-" if age is None else f"{cast(float, age):.1f}s"
        last = (
            "-"
            if row["last_published_position"] is None
            else (f"#{row['last_published_position']} at {row['last_published_at']}")
        )
        print(f"{name:<10}{row['total']:>10}{row['pending']:>10}{age_text:>16}  {last}")
    return 0


async def _replay(
    settings: Settings, service: ServiceName, selection: ReplayFilter, *, dry_run: bool
) -> int:
    engine = create_engine(settings, service)
    try:
        total = await count_replayable(engine, selection)
        if dry_run or total == 0:
            verb = "would replay" if dry_run else "nothing to replay:"
            print(f"{service}: {verb} {total} event(s)")
            return 0
        producer = create_producer(settings, f"{service}-replay")
        await asyncio.wait_for(start_producer(producer), timeout=60)
        started, done = time.monotonic(), 0
        progress = Progress(total, sys.stderr)
        try:
            async for rows in replayable_rows(engine, selection):
                await send_rows(producer, rows)
                done += len(rows)
                progress.update(done)
        finally:
            await producer.stop()
        progress.finish()
        elapsed = time.monotonic() - started
        print(f"{service}: replayed {done} event(s) in {elapsed:.1f}s with their original ids")
        return 0
    finally:
        await engine.dispose()


class Progress:
    """A progress bar on a terminal, a line every 10% elsewhere."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self._total = max(total, 1)
        self._stream = stream
        self._width = width
        self._tty = stream.isatty()
        self._last_decile = -1

    def update(self, done: int) -> None:
        share = min(done / self._total, 1.0)
        if self._tty:
            filled = int(share * self._width)
            bar = "#" * filled + "." * (self._width - filled)
            self._stream.write(f"\r[{bar}] {done}/{self._total}")
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            self._stream.write(f"replayed {done}/{self._total}\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()

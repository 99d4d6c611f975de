"""``ticketing projections verify|rebuild``: fold each service's events and compare the result
with its state tables, or rewrite the tables from them."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.cli.events import EVENT_SOURCED
from ticketing.shared.db.engine import create_engine
from ticketing.shared.settings import ServiceName, Settings
from ticketing.shared.store.projections import Rebuilt

Verifier = Callable[[AsyncEngine], Awaitable[list[str]]]
Rebuilder = Callable[[AsyncEngine], Awaitable[Rebuilt]]


def verifiers() -> dict[ServiceName, Verifier]:
    """The services whose state tables are projections of an event store, with their checks."""
    from ticketing.booking import projections as booking
    from ticketing.inventory import projections as inventory
    from ticketing.order import projections as order

    return {"inventory": inventory.verify, "booking": booking.verify, "order": order.verify}


def rebuilders() -> dict[ServiceName, Rebuilder]:
    """Each event-sourced service's rebuild, reporting what it wrote."""
    from ticketing.booking import projections as booking
    from ticketing.inventory import projections as inventory
    from ticketing.order import projections as order

    return {"inventory": inventory.rebuild, "booking": booking.rebuild, "order": order.rebuild}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    projections = commands.add_parser(
        "projections",
        help="check or rebuild the state tables from the events (the source of truth)",
        description="A service's state tables are projections of its events. verify folds "
        "every event stream and prints each row the tables and the events disagree on; it "
        "exits 1 when there is one. rebuild rewrites every row the events disagree with, "
        "while the service keeps running. Event-sourced so far: "
        f"{', '.join(EVENT_SOURCED)}.",
    )
    actions = projections.add_subparsers(
        dest="projections_command", required=True, metavar="ACTION"
    )
    check = actions.add_parser("verify", help="compare the tables with the folded events")
    check.add_argument("--service", choices=EVENT_SOURCED, help="one service (default: all)")
    fix = actions.add_parser(
        "rebuild", help="rewrite the tables from the events, stream by stream, while serving"
    )
    fix.add_argument("--service", choices=EVENT_SOURCED, required=True)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.projections_command == "rebuild":
        return asyncio.run(_rebuild(settings, args.service))
    services = [args.service] if args.service else list(EVENT_SOURCED)
    return asyncio.run(_verify(settings, services))


async def _rebuild(settings: Settings, service: ServiceName) -> int:
    engine = create_engine(settings, service)
    try:
        done = await rebuilders()[service](engine)
    finally:
        await engine.dispose()
    for line in done.lines():
        print(f"{service}: {line}")
    return 1 if done.broken else 0


async def _verify(settings: Settings, services: list[ServiceName]) -> int:
    checks = verifiers()
    failed = False
    for service in services:
        engine = create_engine(settings, service)
        try:
            problems = await checks[service](engine)
        finally:
            await engine.dispose()
        for problem in problems:
            print(f"{service}: {problem}")
        print(f"{service}: {'agree' if not problems else f'{len(problems)} difference(s)'}")
        failed = failed or bool(problems)
    return 1 if failed else 0

"""``ticketing db``: create and migrate the services' databases."""

from __future__ import annotations

import argparse
from typing import cast

from ticketing.shared.settings import DATABASE_SERVICES, ServiceName, Settings


def _database_service(value: str) -> str:
    if value not in DATABASE_SERVICES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(DATABASE_SERVICES)})"
        )
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="manage the services' databases")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade", help="create missing databases and migrate them to the newest revision"
    )
    upgrade.add_argument(
        "services",
        nargs="*",
        type=_database_service,
        metavar="SERVICE",
        help=f"one or more of {', '.join(DATABASE_SERVICES)} (default: all)",
    )
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from ticketing.shared.db.migrations import upgrade

    for name in args.services or DATABASE_SERVICES:
        service = cast(ServiceName, name)
        created = upgrade(settings, service, args.revision)
        state = "created and migrated" if created else "migrated"
        print(f"{settings.database_name(service)}: {state} to {args.revision}")
    return 0

"""``ticketing``: one command line for every service and tool.

ticketing db upgrade [SERVICE ...]   create missing databases and migrate them
ticketing serve SERVICE              run one HTTP service in the foreground
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import cast

from ticketing import __version__
from ticketing.shared.settings import DATABASE_SERVICES, ServiceName, Settings, SettingsError

HTTP_SERVICES: tuple[ServiceName, ...] = ("inventory", "booking", "order")


def _database_service(value: str) -> str:
    if value not in DATABASE_SERVICES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(DATABASE_SERVICES)})"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketing",
        description="Event-driven ticket booking backend. Configure with TICKETING_* variables.",
    )
    parser.add_argument("--version", action="version", version=f"ticketing {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="manage the services' databases")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser(
        "upgrade", help="create missing databases and migrate them to the newest revision"
    )
    upgrade.add_argument(
        "services",
        nargs="*",
        type=_database_service,
        metavar="SERVICE",
        help=f"one or more of {', '.join(DATABASE_SERVICES)} (default: all that have migrations)",
    )
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")

    serve = commands.add_parser(
        "serve",
        help="run one service in the foreground",
        description="Run one service. booking and order also run their Kafka consumers and "
        "their outbox relay; order serves only health and metrics over HTTP.",
    )
    serve.add_argument("service", choices=HTTP_SERVICES, help="the service to run")
    serve.add_argument("--host", help="bind address (default: TICKETING_<SERVICE>_HOST)")
    serve.add_argument("--port", type=int, help="port (default: TICKETING_<SERVICE>_PORT)")
    return parser


def _db_upgrade(settings: Settings, services: Sequence[str], revision: str) -> int:
    from sqlalchemy.exc import OperationalError

    from ticketing.shared.migrations import alembic_root, upgrade

    chosen = list(services) or [s for s in DATABASE_SERVICES if (alembic_root() / s).is_dir()]
    for name in chosen:
        service = cast(ServiceName, name)
        try:
            created = upgrade(settings, service, revision)
        except OperationalError as error:
            print(
                f"ticketing: cannot reach MySQL at {_redact(settings.mysql_url)}: {error.orig}\n"
                "hint: start MariaDB/MySQL or point TICKETING_MYSQL_URL at one",
                file=sys.stderr,
            )
            return 1
        state = "created and migrated" if created else "migrated"
        print(f"{settings.database_name(service)}: {state} to {revision}")
    return 0


def _serve(settings: Settings, service: ServiceName, host: str | None, port: int | None) -> int:
    import uvicorn
    from litestar import Litestar

    from ticketing.shared.logging import configure_logging

    configure_logging(settings, service)
    app: Litestar
    if service == "inventory":
        from ticketing.inventory.app import create_app as create_inventory

        app = create_inventory(settings)
    elif service == "booking":
        from ticketing.booking.app import create_app as create_booking

        app = create_booking(settings)
    else:
        from ticketing.order.app import create_app as create_order

        app = create_order(settings)
    bind_host, bind_port = settings.bind(service)
    uvicorn.run(
        app,
        host=host or bind_host,
        port=port or bind_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"ticketing: {error}", file=sys.stderr)
        return 2
    if args.command == "db":
        return _db_upgrade(settings, args.services, args.revision)
    if args.command == "serve":
        return _serve(settings, args.service, args.host, args.port)
    return 2  # pragma: no cover - argparse rejects unknown commands

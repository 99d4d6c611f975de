"""``ticketing``: one command line for every service and tool.

ticketing dev                         run the whole stack locally
ticketing db upgrade [SERVICE ...]    create missing databases and migrate them
ticketing serve SERVICE               run one service in the foreground
ticketing outbox status|replay        the published events of the event stores (the outboxes)
ticketing projections verify|rebuild  check or rebuild the state tables from the events
ticketing events export               the event stores as JSON Lines
ticketing docs asyncapi               write the AsyncAPI document of the Kafka topics
ticketing seed --demo                 load demo venues, events and customers
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ticketing import __version__
from ticketing.cli import db, dev, docs, events, outbox, projections, seed, serve
from ticketing.shared.settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketing",
        description="Event-driven ticket booking backend. Configure with TICKETING_* variables "
        "(see the README).",
    )
    parser.add_argument("--version", action="version", version=f"ticketing {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev.add_parser(commands)
    db.add_parser(commands)
    serve.add_parser(commands)
    outbox.add_parser(commands)
    projections.add_parser(commands)
    events.add_parser(commands)
    docs.add_parser(commands)
    seed.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"ticketing: {error}", file=sys.stderr)
        return 2
    handlers = {
        "db": db.run,
        "dev": dev.run,
        "serve": serve.run,
        "outbox": outbox.run,
        "projections": projections.run,
        "events": events.run,
        "docs": docs.run,
        "seed": seed.run,
    }
    from sqlalchemy.exc import OperationalError

    try:
        return handlers[args.command](settings, args)
    except KeyboardInterrupt:
        return 130
    except OperationalError as error:
        print(f"ticketing: {_database_hint(settings, error)}", file=sys.stderr)
        return 1


def _database_hint(settings: Settings, error: Exception) -> str:
    from sqlalchemy.engine import make_url

    orig = getattr(error, "orig", error)
    code = orig.args[0] if getattr(orig, "args", None) else None
    server = make_url(settings.mysql_url).render_as_string(hide_password=True)
    if code == 1049:
        return f"{orig.args[1]}; create it with: ticketing db upgrade"
    return (
        f"cannot reach MySQL at {server}: {orig}\n"
        "hint: start MariaDB/MySQL or set TICKETING_MYSQL_URL"
    )

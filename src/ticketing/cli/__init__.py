"""``ticketing``: one command line for every service and tool.

Each command is a module here with an ``add_parser`` and a ``run``; ``ticketing --help`` lists
them, so the list lives in one place: :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from ticketing import __version__
from ticketing.cli import db, dev, docs, events, outbox, projections, seed, serve
from ticketing.shared.settings import Settings, SettingsError


class Command(Protocol):
    """A command's module."""

    def add_parser(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, settings: Settings, args: argparse.Namespace) -> int: ...


# In the order ``ticketing --help`` shows them.
COMMANDS: dict[str, Command] = {
    "dev": dev,
    "db": db,
    "serve": serve,
    "outbox": outbox,
    "projections": projections,
    "events": events,
    "docs": docs,
    "seed": seed,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketing",
        description="Event-driven ticket booking backend. Configure with TICKETING_* variables "
        "(see the README).",
    )
    parser.add_argument("--version", action="version", version=f"ticketing {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"ticketing: {error}", file=sys.stderr)
        return 2
    from sqlalchemy.exc import OperationalError

    try:
        return COMMANDS[args.command].run(settings, args)
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

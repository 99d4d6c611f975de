"""``ticketing docs``: generated documentation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ticketing.shared.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    docs = commands.add_parser("docs", help="write generated documentation")
    actions = docs.add_subparsers(dest="docs_command", required=True, metavar="WHAT")
    asyncapi = actions.add_parser(
        "asyncapi", help="the AsyncAPI 3 document of every Kafka topic and event"
    )
    asyncapi.add_argument(
        "-o", "--output", type=Path, help="write to this file (default: standard output)"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from ticketing.shared.messaging.asyncapi import asyncapi_document

    text = json.dumps(asyncapi_document(settings.kafka_bootstrap), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0

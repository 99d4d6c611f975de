"""``ticketing dev``: run the whole system in the foreground (see :mod:`ticketing.cli.devstack`)."""

from __future__ import annotations

import argparse
import asyncio

from ticketing.shared.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = commands.add_parser(
        "dev",
        help="run the whole system in the foreground (Ctrl-C stops it)",
        description="Migrates the databases and runs inventory, booking, order (with their "
        "consumers and outbox relays) and the gateway. Starts the bundled Kafka-protocol "
        "broker unless TICKETING_KAFKA_BOOTSTRAP is set, and the dev OIDC server unless "
        "TICKETING_OIDC_ISSUER is set. The database is TICKETING_MYSQL_URL.",
    )
    dev.add_argument(
        "--kafka-port", type=int, default=9092, help="port of the bundled broker (default 9092)"
    )
    dev.add_argument(
        "--idp-port", type=int, default=8180, help="port of the dev OIDC server (default 8180)"
    )
    dev.add_argument(
        "--replicas",
        type=_at_least_one,
        default=1,
        help="replicas of each service (default 1); replica k listens on the service's port "
        "plus 100*k, and callers spread their calls over them",
    )


def _at_least_one(value: str) -> int:
    count = int(value)
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def run(settings: Settings, args: argparse.Namespace) -> int:
    from ticketing.cli.devstack import run as run_stack
    from ticketing.shared.logging import configure_logging

    configure_logging(settings, "dev")
    return asyncio.run(
        run_stack(
            settings, kafka_port=args.kafka_port, idp_port=args.idp_port, replicas=args.replicas
        )
    )

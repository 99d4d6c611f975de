"""``ticketing serve``: run one service in the foreground."""

from __future__ import annotations

import argparse
import sys

from ticketing.shared.settings import SERVICES, ServiceName, Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run one service in the foreground",
        description="Run one service. booking and order also run their Kafka consumers and "
        "their outbox relay; order serves only health and metrics over HTTP; gateway is the "
        "public entry point (port 8090). Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT "
        "(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) names an OTLP/HTTP collector; the other "
        "standard OTEL_* variables apply (README, Observe).",
    )
    serve.add_argument("service", choices=SERVICES, help="the service to run")
    serve.add_argument("--host", help="bind address (default: TICKETING_<SERVICE>_HOST)")
    serve.add_argument("--port", type=int, help="port (default: TICKETING_<SERVICE>_PORT)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from litestar import Litestar

    from ticketing.shared import tracing
    from ticketing.shared.http.serving import serve as serve_app
    from ticketing.shared.logging import configure_logging

    service: ServiceName = args.service
    try:
        # First: the instrumentation must be in place before any client, producer or engine.
        tracing.configure(service)
    except tracing.TracingConfigError as error:
        print(f"ticketing serve: {error}", file=sys.stderr)
        return 2
    configure_logging(settings, service)
    app: Litestar
    if service == "inventory":
        from ticketing.inventory.app import create_app as create_inventory

        app = create_inventory(settings)
    elif service == "booking":
        from ticketing.booking.app import create_app as create_booking

        app = create_booking(settings)
    elif service == "order":
        from ticketing.order.app import create_app as create_order

        app = create_order(settings)
    else:
        from ticketing.gateway.app import create_app as create_gateway

        app = create_gateway(settings)
    host, port = settings.bind(service)
    serve_app(app, service, args.host or host, args.port or port)
    return 0

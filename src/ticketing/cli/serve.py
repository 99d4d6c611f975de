"""``ticketing serve``: run one service in the foreground."""

from __future__ import annotations

import argparse
import gc
import sys

from ticketing.shared.settings import ServiceName, Settings

SERVED: tuple[ServiceName, ...] = ("inventory", "booking", "order", "gateway")
# Young-generation collections every 20,000 allocations instead of 700, and the older ones
# accordingly rarer: with a service's requests in flight, the collector was a seventh of the
# gateway's CPU (py-spy --native), most of it spent walking objects that live for the whole
# process. Garbage in cycles is still collected, a little later.
GC_THRESHOLDS = (20_000, 20, 20)
GRACEFUL_SHUTDOWN_SECONDS = 5


def settle_heap() -> None:
    """Once started: move everything built so far (modules, the app, pools, caches) out of the
    collector's sight, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def takes_proxy_headers(service: ServiceName) -> bool:
    """Only the gateway faces clients, through whatever proxy sits in front of it, so only it
    reads X-Forwarded-For for the client's address. The services behind it never use that
    address, and parsing the gateway's forwarded headers on every request was 3% of booking's
    CPU (py-spy)."""
    return service == "gateway"


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
    serve.add_argument("service", choices=SERVED, help="the service to run")
    serve.add_argument("--host", help="bind address (default: TICKETING_<SERVICE>_HOST)")
    serve.add_argument("--port", type=int, help="port (default: TICKETING_<SERVICE>_PORT)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn
    from litestar import Litestar

    from ticketing.shared import tracing
    from ticketing.shared.coalescing import CoalescingHttpProtocol
    from ticketing.shared.logging import configure_logging, reclaim_standard_library_logging

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
    app.on_startup.append(settle_heap)  # after the lifespan managers: their objects live on too
    # Last: a startup hook that builds a Litestar app (booking's OpenAPI document) would leave
    # Litestar's log format in charge of the standard library's records.
    app.on_startup.append(reclaim_standard_library_logging)
    host, port = settings.bind(service)
    uvicorn.run(
        app,
        http=CoalescingHttpProtocol,
        host=args.host or host,
        port=args.port or port,
        log_config=None,  # uvicorn's loggers propagate to the root handler: one format
        access_log=False,
        lifespan="on",
        timeout_keep_alive=65,  # longer than clients' and proxies' idle timeouts: no reuse races
        # Open booking streams and waits never end on their own: a stop closes them after this,
        # well within the dev supervisor's and Kubernetes' grace before a kill.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=takes_proxy_headers(service),
    )
    return 0

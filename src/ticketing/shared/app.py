"""HTTP app factory shared by every Litestar service.

It adds what every service must have and nothing a service decides: problem+json errors,
``/health/live``, ``/health/ready`` (the checks a service registers), ``/metrics``, correlation
ids, a request body limit and an OpenAPI document at ``/schema/openapi.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import msgspec
import structlog
from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, Reference, SecurityScheme
from litestar.types import ASGIApp, ControllerRouterHandler, Receive, Scope, Send
from litestar.types.asgi_types import HTTPResponseStartEvent
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ticketing import __version__
from ticketing.shared import tracing
from ticketing.shared.auth.middleware import bearer_auth, verifier_lifespan
from ticketing.shared.http.observability import HttpMetrics, observability_middleware
from ticketing.shared.http.problems import EXCEPTION_HANDLERS, PROBLEM_JSON, problem_body
from ticketing.shared.settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]
Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]
READINESS_TIMEOUT_SECONDS = 2.0
log = structlog.get_logger(__name__)


def from_app_state(name: str) -> Provide:
    """A dependency that hands handlers ``app.state.<name>`` (the service a lifespan put there),
    read off the request's app: Litestar's ``state`` parameter would build a State per call."""

    def provide(request: Request[Any, Any, Any]) -> Any:
        return getattr(request.app.state, name)

    return Provide(provide, sync_to_thread=False)


def register_readiness(
    app: Litestar, name: str, check: ReadinessCheck, *, required: bool = True
) -> None:
    """Make ``/health/ready`` depend on ``check`` (raises when the dependency is down); one not
    ``required`` is reported under its name but leaves the answer's status alone."""
    app.state.readiness[name] = check
    if not required:
        app.state.readiness_reported.add(name)


@get("/health/live", include_in_schema=False, sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    checks: dict[str, ReadinessCheck] = request.app.state.readiness
    failing: set[str] = request.app.state.readiness_failing
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            results[name] = "unavailable"
            # Once per failure, not once per probe: a starting service is probed many times.
            if name not in failing:
                failing.add(name)
                log.warning("readiness check failed", check=name, error=repr(error))
        else:
            if name in failing:
                failing.discard(name)
                log.info("readiness check passes", check=name)
    reported: set[str] = request.app.state.readiness_reported
    healthy = all(value == "ok" for name, value in results.items() if name not in reported)
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": results}
    details = getattr(request.app.state, "health_details", None)
    if details is not None:
        body.update(details())
    return Response(body, status_code=200 if healthy else 503)


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    http_metrics: HttpMetrics = request.app.state.metrics
    await http_metrics.refresh()
    return Response(generate_latest(http_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def header_limit(app: ASGIApp, max_bytes: int) -> ASGIApp:
    """Refuse requests whose headers add up to more than ``max_bytes`` (431)."""

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            size = sum(len(name) + len(value) for name, value in scope.get("headers", ()))
            if size > max_bytes:
                body = msgspec.json.encode(
                    problem_body(
                        431,
                        f"the request headers are over {max_bytes} bytes",
                        str(scope.get("path", "")),
                    )
                )
                start: HTTPResponseStartEvent = {
                    "type": "http.response.start",
                    "status": 431,
                    "headers": [
                        (b"content-type", PROBLEM_JSON.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
        await app(scope, receive, send)

    return guard


def _announce() -> Lifespan:
    @asynccontextmanager
    async def announce(_: Litestar) -> AsyncIterator[None]:
        log.info("service started", version=__version__)
        try:
            yield
        finally:
            log.info("service stopped")

    return announce


def _openapi_config(service: str, description: str, authenticate: bool) -> OpenAPIConfig:
    security_schemes: dict[str, SecurityScheme | Reference] = {
        "bearerAuth": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
    }
    return OpenAPIConfig(
        title=f"ticketing {service}",
        version=__version__,
        description=description,
        path="/schema",
        render_plugins=[JsonRenderPlugin()],
        components=Components(security_schemes=security_schemes) if authenticate else [],
        security=[{"bearerAuth": []}] if authenticate else None,
    )


def create_http_app(
    *,
    service: str,
    settings: Settings,
    route_handlers: Sequence[ControllerRouterHandler],
    lifespan: Sequence[Lifespan] = (),
    description: str = "",
    authenticate: bool = True,
    own_openapi: bool = True,
    public_metrics: bool = True,
    trusts_callers: bool = True,
    debug: bool = False,
) -> Litestar:
    """A Litestar app with the shared endpoints, error mapping and middleware.

    With ``authenticate`` every path but health, the docs and (unless ``public_metrics`` is
    off, as on the public gateway) metrics needs a valid bearer token; ``request.user`` is then
    the caller's ``Principal``. An app that does not ``trusts_callers`` (the public gateway)
    starts every trace itself, whatever trace headers a caller sends.
    """
    http_metrics = HttpMetrics(service=service)
    security = [verifier_lifespan(settings)] if authenticate else []
    app = Litestar(
        route_handlers=[live, ready, metrics, *route_handlers],
        lifespan=[_announce(), *security, *lifespan],
        middleware=[bearer_auth(public_metrics=public_metrics)] if authenticate else [],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=_openapi_config(service, description, authenticate) if own_openapi else None,
        state=None,
        debug=debug,
        logging_config=None,  # ours (shared/logging.py): Litestar's own would replace it
    )
    app.state.readiness = {}
    app.state.readiness_failing = set()
    app.state.readiness_reported = set()
    app.state.metrics = http_metrics
    app.state.settings = settings
    # Wrap the router-level handler (not a route middleware) so that unrouted requests (404, 405)
    # are counted, logged, traced and carry the correlation id too.
    app.asgi_handler = tracing.instrument_asgi(
        observability_middleware(
            header_limit(app.asgi_handler, settings.max_header_bytes), http_metrics
        ),
        trusts_callers=trusts_callers,
    )
    return app

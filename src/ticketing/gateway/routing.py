"""Which upstream serves a public path, and which permission a request needs. Plain rules."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from ticketing.contracts.booking import MAX_WAIT_SECONDS
from ticketing.shared.settings import ServiceName

# Public path prefixes and the service behind each. Paths are forwarded unchanged.
ROUTES: Final[dict[str, ServiceName]] = {
    "/api/v1/venues": "inventory",
    "/api/v1/events": "inventory",
    "/api/v1/customers": "booking",
    "/api/v1/bookings": "booking",
}
# Writes need a permission per service; any valid token may read.
WRITE_PERMISSIONS: Final[dict[str, str]] = {
    "inventory": "inventory:write",
    "booking": "bookings:write",
}
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
UPSTREAMS: Final[tuple[ServiceName, ...]] = ("inventory", "booking")


def route_for(path: str) -> tuple[str, ServiceName] | None:
    """The route prefix matching ``path`` and the service behind it, or None: never routed
    (``/internal/*`` among others)."""
    for prefix, service in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return prefix, service
    return None


def upstream_for(path: str) -> ServiceName | None:
    route = route_for(path)
    return None if route is None else route[1]


def permission_for(method: str, upstream: str) -> str | None:
    """The permission a ``method`` request to ``upstream`` needs (None: any valid token)."""
    if method.upper() in READ_METHODS:
        return None
    return WRITE_PERMISSIONS[upstream]


# The two answers an upstream may hold open past the usual timeout (issue 20's status push),
# with the repeated and trailing slashes booking's router (Litestar's) ignores.
WAITING_BOOKING: Final = re.compile(r"/api/v1/bookings/+[^/]+/*")
BOOKING_STREAM: Final = re.compile(r"/api/v1/customers/+[^/]+/+bookings/+stream/*")
# A silent stream is taken for a dead one after this many missed heartbeats.
HEARTBEATS_MISSED: Final = 3


@dataclass(frozen=True, slots=True)
class LongRequest:
    """A request whose answer may take long (a long-poll) or never end (an event stream): its
    own upstream timeouts, in seconds (None: no limit), and its route label for metrics."""

    total: float | None
    read: float | None
    stream: bool
    template: str


def long_request(
    method: str, path: str, query: str, *, timeout: float, heartbeat: float
) -> LongRequest | None:
    """The long request ``method path?query`` is, or None for an ordinary one. A long-poll
    (``GET /api/v1/bookings/{id}?wait=``) may take its wait (at most ``MAX_WAIT_SECONDS``) on
    top of the usual ``timeout``; a wait that is no number above 0 is booking's to refuse, in
    the usual time. A stream has no total limit, but may fall silent for no longer than
    ``HEARTBEATS_MISSED`` of its ``heartbeat`` periods."""
    if method != "GET":
        return None
    if BOOKING_STREAM.fullmatch(path):
        return LongRequest(
            total=None,
            read=HEARTBEATS_MISSED * heartbeat,
            stream=True,
            template="/api/v1/customers/*/bookings/stream",
        )
    if not WAITING_BOOKING.fullmatch(path):
        return None
    # Of several waits the longest: booking reads one of them, and the timeout must cover it.
    waits = [number(value) for name, value in parse_qsl(query) if name == "wait"]
    wait = max((seconds for seconds in waits if seconds is not None and seconds > 0), default=0)
    if not wait:
        return None
    return LongRequest(
        total=min(wait, MAX_WAIT_SECONDS) + timeout,
        read=None,
        stream=False,
        template="/api/v1/bookings/*?wait",
    )


def number(text: str) -> float | None:
    """``text`` as a finite number, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None

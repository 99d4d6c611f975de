"""Which upstream serves a public path, and which permission a request needs. Plain rules."""

from __future__ import annotations

from typing import Final

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

"""The merged OpenAPI document of every upstream, as the gateway exposes it.

Paths are kept unchanged, and only those the gateway routes are listed. A component name used
by two services for different schemas is prefixed with the service's name, and every reference
to it rewritten. One bearer (JWT) and one OAuth2 client-credentials scheme secure the whole API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ticketing import __version__
from ticketing.gateway.routing import upstream_for
from ticketing.shared.errors import Unavailable
from ticketing.shared.http.upstream import Upstream

REF_PREFIX = "#/components/schemas/"
FETCH_TIMEOUT_SECONDS = 2.0
log = structlog.get_logger(__name__)


def _rewrite(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        result = {key: _rewrite(value, renames) for key, value in node.items()}
        ref = result.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            name = ref[len(REF_PREFIX) :]
            result["$ref"] = REF_PREFIX + renames.get(name, name)
        return result
    if isinstance(node, list):
        return [_rewrite(item, renames) for item in node]
    return node


def _conflicting_names(specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per service, the component renames needed so that no two services share a name."""
    seen: dict[str, dict[str, str]] = {}
    for service, spec in specs.items():
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            seen.setdefault(name, {})[service] = json.dumps(schema, sort_keys=True)
    renames: dict[str, dict[str, str]] = {service: {} for service in specs}
    for name, by_service in seen.items():
        if len(set(by_service.values())) > 1:
            for service in by_service:
                renames[service][name] = f"{service.capitalize()}{name}"
    return renames


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}
PROBLEMS = {
    "400": "The request is not valid; the detail names the field.",
    "401": "No valid bearer token.",
    "403": "The token lacks the permission this operation needs.",
    "404": "An id in the path or the body names nothing.",
    "405": "The path does not serve this method.",
    "409": "The request contradicts the current state (e.g. too few tickets left).",
    "413": "The body is over the size limit.",
    "422": "An Idempotency-Key reused with another body.",
    "429": "Rate limit exceeded; see Retry-After.",
    "431": "The request headers are too large.",
    "503": "A service behind the gateway is unavailable; see Retry-After.",
}


def _with_problems(operation: dict[str, Any]) -> dict[str, Any]:
    """Every error answer is application/problem+json, whatever the service documented."""
    responses = dict(operation.get("responses", {}))
    for status, description in PROBLEMS.items():
        responses[status] = {
            "description": description,
            "content": {"application/problem+json": {"schema": {"$ref": REF_PREFIX + "Problem"}}},
        }
    return {**operation, "responses": responses}


def merge(specs: dict[str, dict[str, Any]], *, token_url: str | None) -> dict[str, Any]:
    renames = _conflicting_names(specs)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    for service, spec in sorted(specs.items()):
        for path, item in spec.get("paths", {}).items():
            if upstream_for(path) == service:
                paths[path] = {
                    method: _with_problems(operation) if isinstance(operation, dict) else operation
                    for method, operation in _rewrite(item, renames[service]).items()
                }
        for name, schema in spec.get("components", {}).get("schemas", {}).items():
            schemas[renames[service].get(name, name)] = _rewrite(schema, renames[service])
        for tag in spec.get("tags", []):
            tags.setdefault(tag["name"], tag)
    security_schemes: dict[str, Any] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    if token_url:
        security_schemes["oauth2"] = {
            "type": "oauth2",
            "description": "Client credentials grant at the OIDC issuer.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": token_url,
                    "scopes": {
                        "inventory:write": "create venues and events",
                        "bookings:write": "create customers and bookings",
                        "bookings:admin": "confirm or cancel any client's booking",
                    },
                }
            },
        }
        security.append({"oauth2": []})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ticketing API",
            "version": __version__,
            "description": "Every public operation, as the gateway exposes it. Reads need any "
            "valid token; writes need inventory:write or bookings:write (and bookings:admin to "
            "confirm or cancel another client's booking). A booking is accepted with 202 and "
            "settles to CONFIRMED (HELD, for a hold) or REJECTED: wait for it with "
            "GET /api/v1/bookings/{id}?wait=, or follow the customer's booking stream.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {**dict(sorted(schemas.items())), "Problem": PROBLEM_SCHEMA},
            "securitySchemes": security_schemes,
        },
        "security": security,
        "tags": list(tags.values()),
    }


class MergedSpec:
    """Fetches each upstream's document, and again until every upstream has answered (so a
    service that comes up later appears), then every ``refresh_seconds``."""

    def __init__(
        self,
        upstreams: dict[str, Upstream],
        token_url: Callable[[], Awaitable[str | None]],
        *,
        refresh_seconds: float = 60.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self._upstreams = upstreams
        self._token_url = token_url
        self._refresh = refresh_seconds
        self._retry = retry_seconds
        self._specs: dict[str, dict[str, Any]] = {}
        self._merged: dict[str, Any] | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            complete = len(self._specs) == len(self._upstreams)
            age = time.monotonic() - self._fetched_at
            if self._merged is None or age > (self._refresh if complete else self._retry):
                await self._fetch_all()
            assert self._merged is not None
            return self._merged

    async def _fetch_all(self) -> None:
        for name, upstream in self._upstreams.items():
            try:
                async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                    reply = await upstream.probe("/schema/openapi.json")
                if reply.status_code != 200:
                    raise Unavailable(f"{name} answered {reply.status_code}")
                self._specs[name] = json.loads(reply.content)
            except (Unavailable, TimeoutError, ValueError) as error:
                log.info("upstream document unavailable", upstream=name, error=type(error).__name__)
        try:
            token_url = await self._token_url()
        except Exception:  # noqa: BLE001 - the docs work without the issuer
            token_url = None
        self._merged = merge(self._specs, token_url=token_url)
        self._merged["x-upstreams"] = {name: name in self._specs for name in self._upstreams}
        self._fetched_at = time.monotonic()

"""Typed settings, read once from ``TICKETING_*`` environment variables.

Every field has a documented default that works on a developer machine. Tests build a
``Settings`` directly instead of patching the environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal, get_args
from urllib.parse import urlsplit

ServiceName = Literal["inventory", "booking", "order", "gateway"]
SERVICES: tuple[ServiceName, ...] = get_args(ServiceName)
DATABASE_SERVICES: tuple[ServiceName, ...] = ("inventory", "booking", "order")
# The services others call over HTTP: each has a TICKETING_<SERVICE>_URL listing its replicas.
CALLED_SERVICES: tuple[ServiceName, ...] = ("inventory", "booking")

MAX_HOLD_SECONDS = 30 * 24 * 3600  # a hold longer than a month is no hold
PREFIX = "TICKETING_"


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of every service; field ``x`` is read from ``TICKETING_X``."""

    mysql_url: str = "mysql+aiomysql://root@127.0.0.1:3306"
    db_prefix: str = "ticketing_"
    db_pool_size: int = 20
    db_max_overflow: int = 10
    db_pool_timeout: float = 30.0
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_enable_idempotence: bool = False
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_fetch_max_wait_ms: int = 500
    # Partitions of the topics `ticketing dev` creates: a consumer group has at most this many
    # members at work, so it caps the consumers' parallelism (docs/scaling.md).
    kafka_partitions: int = 6
    inventory_url: str = ""
    booking_url: str = ""
    upstream_timeout: float = 3.0
    booking_max_tickets: int = 10
    event_cache_seconds: float = 1.0
    idempotency_ttl_hours: int = 24
    idempotency_inflight_seconds: float = 30.0
    relay_batch_size: int = 500
    relay_poll_interval: float = 0.2
    consumer_max_attempts: int = 5
    consumer_batch_size: int = 32
    gateway_rate_limit_per_second: float = 100.0
    gateway_rate_limit_burst: int = 200
    redis_url: str = ""  # set: one rate limit shared by every gateway replica
    redis_key_prefix: str = "ticketing:"
    redis_timeout: float = 0.1
    breaker_window: int = 8
    breaker_min_calls: int = 4
    breaker_failure_ratio: float = 0.5
    breaker_open_seconds: float = 5.0
    breaker_half_open_probes: int = 1
    # Files outside the package, found relative to the working directory (the checkout's root,
    # or the image's /app) unless set: the docs UI's assets, the migration environments, and the
    # dev OIDC server `ticketing dev` runs.
    docs_assets_dir: str = "web/node_modules"
    alembic_dir: str = "alembic"
    dev_idp_dir: str = "deploy/dev-idp"
    docs_token_url: str = ""
    inventory_host: str = "127.0.0.1"
    inventory_port: int = 8081
    booking_host: str = "127.0.0.1"
    booking_port: int = 8082
    order_host: str = "127.0.0.1"
    order_port: int = 8083
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8090
    oidc_issuer: str = "http://127.0.0.1:8180/realms/ticketing"
    oidc_discovery_url: str = ""
    oidc_audience: str = "ticketing-api"
    oidc_leeway_seconds: int = 30
    jwks_min_refresh_seconds: float = 30.0
    order_client_id: str = "order-service"
    order_client_secret: str = "order-service-secret"  # noqa: S105 - the dev server's secret
    booking_client_id: str = "booking-service"
    booking_client_secret: str = "booking-service-secret"  # noqa: S105 - the dev server's secret
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    max_request_body_bytes: int = 64 * 1024
    max_header_bytes: int = 16 * 1024
    # Booking's status push: how often each replica reads its event store for settlements while
    # a client waits (and while none does), the open waits and streams a client may hold per
    # replica, a stream's heartbeat, and the events a slow stream reader may fall behind by.
    status_poll_interval: float = 0.01
    status_idle_poll_interval: float = 1.0
    status_max_open_per_client: int = 20
    stream_heartbeat_seconds: float = 15.0
    stream_buffer_events: int = 256
    # How long a position may stay missing below seen ones before streams pass it as a hole
    # for good (a rolled-back write): longer than any commit takes after its write.
    status_hole_seconds: float = 2.0
    # How long a HELD booking keeps its seats before it expires, and how often each booking
    # replica looks for holds past their time.
    hold_seconds: float = 900.0  # at most MAX_HOLD_SECONDS
    hold_sweep_seconds: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), converting each value."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(PREFIX + field.name.upper())
            if raw is None:
                continue
            values[field.name] = _convert(field.name, str(field.type), raw)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError("TICKETING_LOG_FORMAT must be auto, json or console")
        if not self.db_prefix.replace("_", "").isalnum():
            raise SettingsError("TICKETING_DB_PREFIX may hold only letters, digits and '_'")
        self._check_durations()
        for name in (
            "booking_max_tickets",
            "consumer_batch_size",
            "relay_batch_size",
            "kafka_partitions",
            "status_max_open_per_client",
            "stream_buffer_events",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"TICKETING_{name.upper()} must be at least 1")
        if "/" in self.mysql_url.partition("?")[0].split("://", 1)[-1].rstrip("/"):
            raise SettingsError("TICKETING_MYSQL_URL names a server, not a database: drop the path")
        for name in (f"{service}_url" for service in CALLED_SERVICES):
            value: str = getattr(self, name)
            if value.strip() and not _listed(value):
                raise SettingsError(f"TICKETING_{name.upper()} lists no address")
            for url in _listed(value):
                if not _is_http_address(url):
                    raise SettingsError(
                        f"TICKETING_{name.upper()} must list http:// or https:// addresses, "
                        f"separated by commas; got {url!r}"
                    )

    def _check_durations(self) -> None:
        """Every duration is a finite time above 0 (NaN passes a plain ``<= 0``), and a hold's
        fits a calendar: its expiry is its settlement's time plus it."""
        for name in (
            "redis_timeout",
            "status_poll_interval",
            "status_idle_poll_interval",
            "stream_heartbeat_seconds",
            "status_hole_seconds",
            "hold_seconds",
            "hold_sweep_seconds",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SettingsError(f"TICKETING_{name.upper()} must be above 0 seconds")
        for name, most in (("hold_seconds", MAX_HOLD_SECONDS), ("hold_sweep_seconds", 3600)):
            if getattr(self, name) > most:
                raise SettingsError(f"TICKETING_{name.upper()} must be at most {most} seconds")

    def database_name(self, service: ServiceName) -> str:
        return f"{self.db_prefix}{service}"

    def database_url(self, service: ServiceName) -> str:
        server, _, query = self.mysql_url.partition("?")
        url = f"{server.rstrip('/')}/{self.database_name(service)}"
        return f"{url}?{query}" if query else url

    def bind(self, service: ServiceName) -> tuple[str, int]:
        host: str = getattr(self, f"{service}_host")
        port: int = getattr(self, f"{service}_port")
        return host, port

    def client_credentials(self, service: ServiceName) -> tuple[str, str]:
        """The client id and secret ``service`` asks the token server for its own tokens with
        (``TICKETING_<SERVICE>_CLIENT_ID`` and ``_CLIENT_SECRET``: only services that call
        another have them)."""
        client_id: str = getattr(self, f"{service}_client_id")
        client_secret: str = getattr(self, f"{service}_client_secret")
        return client_id, client_secret

    def base_urls(self, service: ServiceName) -> list[str]:
        """Where another service reaches ``service``'s replicas: the comma-separated list in
        ``TICKETING_<SERVICE>_URL`` when the setting exists and is set, else its bind address
        (0.0.0.0 reached as 127.0.0.1)."""
        configured = _listed(getattr(self, f"{service}_url", ""))
        if configured:
            return [url.rstrip("/") for url in configured]
        host, port = self.bind(service)
        return [f"http://{url_host(host)}:{port}"]

    def base_url(self, service: ServiceName) -> str:
        """Where another service reaches ``service``'s first replica."""
        return self.base_urls(service)[0]


def url_host(host: str) -> str:
    """``host`` as the host of a URL callers reach a bound server at: a wildcard address as
    the loopback one, an IPv6 address in brackets."""
    if host in ("0.0.0.0", "::"):  # noqa: S104
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _is_http_address(url: str) -> bool:
    """Whether ``url`` is one http(s) address with a host (and a valid port, if any), and
    nothing a request path appended to it would land in (a query or a fragment)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and "?" not in url
        and "#" not in url
        and url.isprintable()
        and " " not in url
    )


def _listed(value: str) -> list[str]:
    """The addresses of a comma-separated list, blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _convert(name: str, annotation: str, raw: str) -> object:
    variable = PREFIX + name.upper()
    if annotation == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{variable} must be an integer, got {raw!r}") from None
    if annotation == "float":
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{variable} must be a number, got {raw!r}") from None
    if annotation == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{variable} must be true or false, got {raw!r}")
    return raw

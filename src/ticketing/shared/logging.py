"""structlog configuration: JSON in services, readable on a terminal.

Context (``service``, ``correlation_id``, ``message_id``) travels in contextvars, so every
log line written while handling a request or a message carries it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ticketing.shared.observability import add_correlation_id
from ticketing.shared.settings import Settings

_SECRET_KEYS = frozenset({"authorization", "password", "secret", "token", "access_token"})


def _drop_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(settings: Settings, service: str) -> None:
    """Configure structlog and the standard library root logger for one process."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    json_output = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_correlation_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, force=True)
    structlog.contextvars.bind_contextvars(service=service)

"""structlog configuration: JSON in services, readable on a terminal.

Context (``service``, ``correlation_id``, ``message_id``) travels in contextvars, so every
log line written while handling a request or a message carries it.

The standard library's loggers (uvicorn, aiokafka, Litestar, httpx...) go through one root
handler whose formatter is structlog's, so a process writes a single format. structlog's own
loggers keep printing directly: routing them through ``logging`` would cost every line a
``LogRecord``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog
from structlog.typing import Processor

from ticketing.shared import tracing
from ticketing.shared.correlation import add_correlation_id
from ticketing.shared.settings import Settings

_SECRET_KEYS = frozenset({"authorization", "password", "secret", "token", "access_token"})
# Libraries that log every request they make at INFO: the gateway's and ``ticketing dev``'s
# health probes would fill the log.
QUIET_LIBRARIES = ("httpx", "httpcore")


def _drop_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


_encoder = msgspec.json.Encoder(enc_hook=repr)


def json_line(event_dict: Any, **_: Any) -> str:
    """A log line as JSON, by msgspec: every request writes one, and the standard library's
    encoder was a noticeable share of the gateway's time per request. A value JSON has no form
    for is written as its ``repr``, as structlog's own fallback does; what msgspec refuses (a
    lone surrogate, a key that is no string) goes to the standard library's encoder instead."""
    try:
        return _encoder.encode(event_dict).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return json.dumps(event_dict, default=repr)


def _drop_color_message(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """uvicorn passes a copy of its message with terminal colours as an ``extra`` field."""
    event_dict.pop("color_message", None)
    return event_dict


_root_handler: logging.Handler | None = None
_root_level = logging.INFO


def configure_logging(settings: Settings, service: str) -> None:
    """Configure structlog and the standard library root logger for one process (after
    tracing, whose ids the lines then carry)."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    json_output = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=json_line)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    enrich: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_correlation_id,
        # Only when on, so that tracing off costs the log nothing either.
        *([tracing.add_trace_ids] if tracing.enabled() else []),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*enrich, _drop_secrets, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_standard_library(level, enrich, renderer)
    structlog.contextvars.bind_contextvars(service=service)


def _route_standard_library(level: int, enrich: list[Processor], renderer: Processor) -> None:
    """One stderr handler on the root logger, rendering records as structlog renders its own
    (a record's ``extra`` fields become keys, so secrets among them are redacted too)."""
    global _root_handler, _root_level  # logging is configured once per process
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *enrich,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _drop_color_message,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    _root_handler, _root_level = handler, level
    reclaim_standard_library_logging()
    logging.captureWarnings(True)  # a library's DeprecationWarning is a log line like the others
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def reclaim_standard_library_logging() -> None:
    """Put our handler back as the root logger's only one, after something replaced it: a
    Litestar app built with its default logging configuration does that (and gives the
    ``litestar`` logger a handler of its own)."""
    if _root_handler is None:
        return
    litestar = logging.getLogger("litestar")
    for handler in list(litestar.handlers):
        litestar.removeHandler(handler)
    litestar.propagate = True
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler is not _root_handler:
            root.removeHandler(handler)
    if _root_handler not in root.handlers:
        root.addHandler(_root_handler)
    root.setLevel(_root_level)

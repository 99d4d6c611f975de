"""OpenTelemetry tracing: one trace per booking across HTTP, the event stores and Kafka (ADR 19).

Configured by the standard ``OTEL_*`` variables and off unless an OTLP endpoint is set: then no
instrumentation is installed, this module imports nothing of OpenTelemetry's and every helper
here is one check of a flag (Litestar and FastStream still import parts of the API at start,
because the packages are installed; neither makes a span). On, the maintained instrumentations
do the protocol work (ASGI servers, aiohttp clients, aiokafka sends, SQLAlchemy engines); the
spans :mod:`ticketing.shared.tracing_spans` writes, imported only when tracing is on, are those
no instrumentation can know: a consumer's per-record processing, which our batches would
otherwise start as new traces, and the statements run on the driver's cursor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from litestar.types import ASGIApp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

TRACEPARENT = "traceparent"
TRACE_CONTEXT = frozenset({TRACEPARENT, "tracestate"})  # what a traced send writes itself
# What a client may send that would choose our trace ids, force sampling or carry baggage in.
CLIENT_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
# Probed every few seconds by orchestrators and scraped by Prometheus: a trace each would bury
# the bookings'.
UNTRACED_URLS = "/health/live,/health/ready,/metrics"
HTTP_PROTOBUF = "http/protobuf"
W3C_PROPAGATORS = frozenset({"tracecontext", "baggage"})
_NOTHING: AbstractContextManager[None] = nullcontext()


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for what this build cannot do."""


@dataclass(frozen=True, slots=True)
class _Tracing:
    provider: TracerProvider
    tracer: Tracer


_state: _Tracing | None = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the variables turn tracing on: an OTLP endpoint set, the SDK not disabled and the
    exporter not ``none``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def check(environ: Mapping[str, str]) -> None:
    """Refuse, before anything starts, an exporter or protocol that is not OTLP over HTTP, and
    propagators other than W3C's."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter != "otlp":
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={exporter!r} is not supported: use otlp (or none for off)"
        )
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip().lower()
        if protocol:
            if protocol != HTTP_PROTOBUF:
                raise TracingConfigError(
                    f"{name}={protocol!r} is not supported: traces are sent as {HTTP_PROTOBUF}"
                    " (a collector's port 4318)"
                )
            break
    # Read by the SDK when it is first imported: any other name is one it cannot load (it
    # raises a bare ValueError), and without tracecontext the HTTP hops would carry no trace
    # while the relay's and consumers' W3C headers still did.
    names = environ.get("OTEL_PROPAGATORS", "").strip() or "tracecontext,baggage"
    propagators = {name.strip() for name in names.split(",")}
    if "tracecontext" not in propagators or not propagators <= W3C_PROPAGATORS:
        raise TracingConfigError(
            f"OTEL_PROPAGATORS={names!r} is not supported: use tracecontext or tracecontext,baggage"
        )


def configure(
    service: str,
    environ: Mapping[str, str] = os.environ,
    *,
    exporter: SpanExporter | None = None,
) -> bool:
    """Turn tracing on for this process when the variables (or a test's ``exporter``) ask for
    it; whether it is on. Call before any aiohttp session, Kafka producer or engine is made."""
    global _state  # noqa: PLW0603 - one tracer provider per process, as instrumentations patch
    if _state is not None:
        return True
    if exporter is None:
        if not wanted(environ):
            return False
        check(environ)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"ticketing-{service}"}))
    provider = TracerProvider(resource=resource)
    provider.sampler = _entries_only(provider.sampler)  # before any tracer takes it
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for instrumentor, unchecked in _instrumentors():
        instrumentor.instrument(tracer_provider=provider, skip_dep_check=unchecked)
    _sends_only()
    _state = _Tracing(provider, provider.get_tracer("ticketing"))
    return True


def _instrumentors() -> list[tuple[Any, bool]]:
    """The maintained instrumentations tracing installs (every aiohttp client, aiokafka's sends,
    every SQLAlchemy engine), each with whether its version check is skipped: SQLAlchemy's
    declared range stops below 2.1, whose engine events it hooks unchanged."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    return [
        (AioHttpClientInstrumentor(), False),
        (AIOKafkaInstrumentor(), False),
        (SQLAlchemyInstrumentor(), True),
    ]


def _sends_only() -> None:
    """Take the aiokafka instrumentation off the consumer's fetches, keeping it on sends. It
    decodes a fetched record's trace headers as strict UTF-8, so one record whose header is
    not made every fetch raise, which ends FastStream's consume loop for good; our processing
    spans, made from headers decoded leniently, stand in for its receive spans."""
    import aiokafka
    from opentelemetry.instrumentation.utils import unwrap

    unwrap(aiokafka.AIOKafkaConsumer, "getone")
    unwrap(aiokafka.AIOKafkaConsumer, "getmany")


def _entries_only(sampler: Any) -> Any:
    """``sampler`` (the one OTEL_TRACES_SAMPLER names) for every span but the roots that do
    not start work someone asked for: only a request served or an event sent may start a
    trace, not a relay's poll, a readiness check's query or a consumer's fetch."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    starts = (trace.SpanKind.SERVER, trace.SpanKind.PRODUCER)

    class EntriesOnly(Sampler):
        def should_sample(  # noqa: PLR0917 - the SDK's signature
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            parent = trace.get_current_span(parent_context).get_span_context()
            if not parent.is_valid and kind not in starts:
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(  # type: ignore[no-any-return]
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"EntriesOnly{{{sampler.get_description()}}}"

    return EntriesOnly()


def shutdown() -> None:
    """Export what is buffered and take the instrumentation out (tests turn tracing off)."""
    global _state  # noqa: PLW0603
    if _state is None:
        return
    for instrumentor, _ in _instrumentors():
        instrumentor.uninstrument()
    _state.provider.shutdown()
    _state = None


def enabled() -> bool:
    return _state is not None


def instrument_asgi(app: ASGIApp, *, trusts_callers: bool = True) -> ASGIApp:
    """``app`` with a server span per request when tracing is on. An app that does not trust
    its callers (the public gateway) starts every trace itself: a client's trace headers are
    dropped before they are read. An app that does runs a caller's unsampled request in its
    context without a span."""
    if _state is None:
        return app
    from ticketing.shared import tracing_spans

    return tracing_spans.instrument_asgi(app, _state.provider, trusts_callers=trusts_callers)


def name_server_span(method: str, route: str) -> None:
    """Name the request's server span by its route, known only once the router has run."""
    if _state is None:
        return
    from ticketing.shared import tracing_spans

    tracing_spans.name_server_span(method, route)


def current_traceparent() -> str | None:
    """The W3C traceparent of the span being run, to store with the events it records."""
    if _state is None:
        return None
    from ticketing.shared import tracing_spans

    return tracing_spans.current_traceparent()


def resumed(traceparent: str | None) -> AbstractContextManager[None]:
    """Run under the trace context ``traceparent`` names (a stored event's): what is sent or
    called meanwhile joins that trace."""
    if _state is None or not traceparent:
        return _NOTHING
    from ticketing.shared import tracing_spans

    return tracing_spans.attached(traceparent)


class Record(Protocol):
    """What a record's processing span is made from (the runner's deliveries are such)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class Consumed:
    """A :class:`Record` on its own, without a payload."""

    topic: str
    partition: int
    offset: int
    headers: Mapping[str, str]


def processing(records: Sequence[Record]) -> AbstractContextManager[list[str | None]]:
    """Spans for a consumer's batch; yields each record's traceparent (None when tracing is
    off), for the events it causes."""
    if _state is None or not records:
        return nullcontext([None] * len(records))
    from ticketing.shared import tracing_spans

    return tracing_spans.processing(_state.tracer, records)


def without_trace_context(headers: Mapping[str, str]) -> Mapping[str, str]:
    """A record's ``headers`` to send again (to the dead-letter topic), less its trace context
    when tracing is on: the send adds its own, a child in the same trace, and a second
    ``traceparent`` would be read as the first by some consumers and as the last by others."""
    if _state is None:
        return headers
    return {name: value for name, value in headers.items() if name not in TRACE_CONTEXT}


def database_call(statement: str) -> AbstractContextManager[Any]:
    """A client span for a statement run on the driver's cursor, which SQLAlchemy's
    instrumentation does not see; its parameters are never recorded."""
    if _state is None:
        return _NOTHING
    from ticketing.shared import tracing_spans

    return tracing_spans.database_call(_state.tracer, statement)


def add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the current trace and span ids on a line written inside a
    sampled trace."""
    if _state is None:
        return event_dict
    from ticketing.shared import tracing_spans

    return tracing_spans.add_trace_ids(event_dict)

"""OpenTelemetry tracing: one trace per booking across HTTP, the event stores and Kafka (ADR 19).

Configured by the standard ``OTEL_*`` variables and off unless an OTLP endpoint is set: then no
instrumentation is installed, this module imports nothing of OpenTelemetry's and every helper
here is one check of a flag (Litestar and FastStream still import parts of the API at start,
because the packages are installed; neither makes a span). On, the maintained instrumentations
do the protocol work (ASGI servers, aiohttp clients, aiokafka sends, SQLAlchemy engines); the
spans written here are those no instrumentation can know: a consumer's per-record processing,
which our batches would otherwise start as new traces, and the statements run on the driver's
cursor.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
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
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    _sends_only()
    # Its declared range stops below SQLAlchemy 2.1, whose engine events it hooks unchanged.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    _state = _Tracing(provider, provider.get_tracer("ticketing"))
    return True


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
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    AioHttpClientInstrumentor().uninstrument()
    AIOKafkaInstrumentor().uninstrument()
    SQLAlchemyInstrumentor().uninstrument()
    _state.provider.shutdown()
    _state = None


def enabled() -> bool:
    return _state is not None


def instrument_asgi(app: ASGIApp, *, trusts_callers: bool = True) -> ASGIApp:
    """``app`` with a server span per request when tracing is on. An app that does not trust
    its callers (the public gateway) starts every trace itself: a client's trace headers are
    dropped before they are read."""
    if _state is None:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    # Both are ASGI apps; the instrumentation types its scopes as plain mappings.
    traced: ASGIApp = OpenTelemetryMiddleware(  # type: ignore[assignment]
        app,
        excluded_urls=UNTRACED_URLS,
        # A span per ASGI message would outnumber the work being traced.
        exclude_spans=["receive", "send"],
        tracer_provider=_state.provider,
    )
    if trusts_callers:

        async def unless_unsampled(scope: Any, receive: Any, send: Any) -> None:
            # A caller's unsampled trace records nothing here: the request runs in its
            # context, which later hops inherit, without the instrumentation's work.
            context = _unsampled(scope)
            if context is None:
                await traced(scope, receive, send)
                return
            from opentelemetry import context as contexts

            token = contexts.attach(context)
            try:
                await app(scope, receive, send)
            finally:
                contexts.detach(token)

        return unless_unsampled

    async def without_client_trace(scope: Any, receive: Any, send: Any) -> None:
        if "headers" in scope:
            headers = scope["headers"]
            kept = [(k, v) for k, v in headers if k.lower() not in CLIENT_TRACE_HEADERS]
            if len(kept) != len(headers):
                scope = {**scope, "headers": kept}
        await traced(scope, receive, send)

    return without_client_trace


def _unsampled(scope: Any) -> Any:
    """The trace context of a request's ``traceparent`` when it is valid and not sampled."""
    for name, value in scope.get("headers", ()):
        if name == b"traceparent":
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )

            context = TraceContextTextMapPropagator().extract(
                {TRACEPARENT: value.decode("latin-1")}
            )
            parent = trace.get_current_span(context).get_span_context()
            return context if parent.is_valid and not parent.trace_flags.sampled else None
    return None


def name_server_span(method: str, route: str) -> None:
    """Name the request's server span by its route, known only once the router has run."""
    if _state is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


def current_traceparent() -> str | None:
    """The W3C traceparent of the span being run, to store with the events it records."""
    if _state is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def resumed(traceparent: str | None) -> AbstractContextManager[None]:
    """Run under the trace context ``traceparent`` names (a stored event's): what is sent or
    called meanwhile joins that trace."""
    if _state is None or not traceparent:
        return _NOTHING
    return _attached(traceparent)


@contextmanager
def _attached(traceparent: str) -> Iterator[None]:
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@dataclass(frozen=True, slots=True)
class Consumed:
    """What a record's processing span is made from."""

    topic: str
    partition: int
    offset: int
    headers: Mapping[str, str]


@contextmanager
def processing(records: Sequence[Consumed]) -> Iterator[list[str | None]]:
    """Spans for a consumer's batch; yields each record's traceparent, for the events it causes.

    Each record gets a span of its own, child of the context its producer sent, so every
    booking's trace goes on through the consumer. The batch's shared work (one transaction,
    one call to each dependency) runs under the record's span in a batch of one; in a larger
    batch, under a span parented on the first sampled record's and linked to every record's.
    """
    if _state is None or not records:
        yield [None] * len(records)
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    tracer = _state.tracer
    spans: list[Any] = []
    for record in records:
        context = propagator.extract(record.headers)
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid and not parent.trace_flags.sampled:
            # Nothing of an unsampled trace is recorded: its context goes on as it came, so
            # later hops keep the decision, without the cost of a span.
            spans.append(trace.NonRecordingSpan(parent))
            continue
        spans.append(
            tracer.start_span(
                f"{record.topic} process",
                context=context,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                },
            )
        )
    recording = [span for span in spans if span.is_recording()]
    shared = recording[0] if recording else spans[0]
    if len(spans) > 1 and recording:
        shared = tracer.start_span(
            f"{records[0].topic} process batch",
            context=trace.set_span_in_context(recording[0]),
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(span.get_span_context()) for span in spans],
            attributes={"messaging.batch.message_count": len(spans)},
        )
    try:
        with trace.use_span(shared, end_on_exit=False):
            yield [_traceparent_of(span) for span in spans]
    finally:
        for span in {id(s): s for s in (*spans, shared)}.values():
            span.end()


def _traceparent_of(span: Any) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


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
    from opentelemetry import trace

    if not trace.get_current_span().is_recording():
        return _NOTHING  # outside a sampled trace this span would be dropped anyway
    return _database_span(statement)


@contextmanager
def _database_span(statement: str) -> Iterator[None]:
    """The statement's span. A failure is recorded by its type and the server's error code
    only: the server's message quotes values (a duplicate key names the taken e-mail)."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    assert _state is not None
    with _state.tracer.start_as_current_span(
        statement.split(None, 1)[0].upper() if statement else "SQL",
        kind=trace.SpanKind.CLIENT,
        attributes={"db.system.name": "mysql", "db.query.text": statement[:2048]},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as error:
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", type(error).__qualname__)
                if error.args and isinstance(error.args[0], int):
                    span.set_attribute("db.response.status_code", str(error.args[0]))
            raise


def add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the current trace and span ids on a line written inside a
    sampled trace."""
    if _state is None:
        return event_dict
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:  # only ids a trace viewer can find
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict

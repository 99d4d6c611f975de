"""The spans and trace context that tracing writes once it is on: imported only then, so a
service without tracing never loads OpenTelemetry's SDK. :mod:`ticketing.shared.tracing` is the
entry point; each function here takes the tracer or provider it set up."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ticketing.shared.tracing import (
    _NOTHING,
    CLIENT_TRACE_HEADERS,
    TRACEPARENT,
    UNTRACED_URLS,
    Record,
)

if TYPE_CHECKING:
    from litestar.types import ASGIApp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer


def instrument_asgi(
    app: ASGIApp, provider: TracerProvider, *, trusts_callers: bool = True
) -> ASGIApp:
    """``app`` with a server span per request (:func:`ticketing.shared.tracing.instrument_asgi`
    says which)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    # Both are ASGI apps; the instrumentation types its scopes as plain mappings.
    traced: ASGIApp = OpenTelemetryMiddleware(  # type: ignore[assignment]
        app,
        excluded_urls=UNTRACED_URLS,
        # A span per ASGI message would outnumber the work being traced.
        exclude_spans=["receive", "send"],
        tracer_provider=provider,
    )
    if trusts_callers:

        async def unless_unsampled(scope: Any, receive: Any, send: Any) -> None:
            # A caller's unsampled trace records nothing here: the request runs in its
            # context, which later hops inherit, without the instrumentation's work.
            unsampled = _unsampled(scope)
            if unsampled is None:
                await traced(scope, receive, send)
                return
            token = context.attach(unsampled)
            try:
                await app(scope, receive, send)
            finally:
                context.detach(token)

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
            carried = TraceContextTextMapPropagator().extract(
                {TRACEPARENT: value.decode("latin-1")}
            )
            parent = trace.get_current_span(carried).get_span_context()
            return carried if parent.is_valid and not parent.trace_flags.sampled else None
    return None


def name_server_span(method: str, route: str) -> None:
    """Name the request's server span by its route, known only once the router has run."""
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


def current_traceparent() -> str | None:
    """The W3C traceparent of the span being run."""
    return _traceparent_of(trace.get_current_span())


@contextmanager
def attached(traceparent: str) -> Iterator[None]:
    """Run under the trace context ``traceparent`` names; under the current span as it is when
    that is the one named (a record handled alone under its processing span), whose statements
    would otherwise go unrecorded beneath a non-recording copy of it."""
    carried = TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})
    named = trace.get_current_span(carried).get_span_context()
    current = trace.get_current_span().get_span_context()
    if (named.trace_id, named.span_id) == (current.trace_id, current.span_id):
        yield
        return
    token = context.attach(carried)
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def processing(tracer: Tracer, records: Sequence[Record]) -> Iterator[list[str | None]]:
    """Spans for a consumer's batch (not empty); yields each record's traceparent.

    Each record gets a span of its own, child of the context its producer sent, so every
    booking's trace goes on through the consumer. The batch's shared work (one transaction,
    one call to each dependency) runs under the record's span in a batch of one; in a larger
    batch, under a span parented on the first sampled record's and linked to every record's.
    """
    propagator = TraceContextTextMapPropagator()
    spans: list[Any] = []
    for record in records:
        carried = propagator.extract(record.headers)
        parent = trace.get_current_span(carried).get_span_context()
        if parent.is_valid and not parent.trace_flags.sampled:
            # Nothing of an unsampled trace is recorded: its context goes on as it came, so
            # later hops keep the decision, without the cost of a span.
            spans.append(trace.NonRecordingSpan(parent))
            continue
        spans.append(
            tracer.start_span(
                f"{record.topic} process",
                context=carried,
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
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def database_call(tracer: Tracer, statement: str) -> AbstractContextManager[Any]:
    """A client span for a statement inside a sampled trace; its parameters are never
    recorded. Outside one the span would be dropped anyway, so none is made."""
    if not trace.get_current_span().is_recording():
        return _NOTHING
    return _database_span(tracer, statement)


@contextmanager
def _database_span(tracer: Tracer, statement: str) -> Iterator[None]:
    """The statement's span. A failure is recorded by its type and the server's error code
    only: the server's message quotes values (a duplicate key names the taken e-mail)."""
    with tracer.start_as_current_span(
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


def add_trace_ids(event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The current trace and span ids on a log line written inside a sampled trace: only ids a
    trace viewer can find."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid and span_context.trace_flags.sampled:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict

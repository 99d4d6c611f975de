"""A local OTLP/HTTP trace receiver: what a collector would get from the services, decoded with
OpenTelemetry's own protobuf messages, for tests and the tracing benchmark."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.harness.processes import free_port

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str  # empty for a root
    name: str
    kind: int  # the OTLP enum: 2 server, 3 client, 4 producer, 5 consumer
    attributes: dict[str, object]
    links: tuple[str, ...]  # the span ids linked to


@dataclass
class Receiver:
    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    received_bytes: int = 0

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.trace_id == trace_id]


def _value(any_value: object) -> object:
    kind = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(any_value, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=service,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=int(span.kind),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=tuple(link.span_id.hex() for link in span.links),
                    )
                )
    return spans


@contextlib.asynccontextmanager
async def otlp_receiver(
    port: int | None = None, *, decode_spans: bool = True
) -> AsyncIterator[Receiver]:
    """An OTLP/HTTP endpoint on loopback; ``url`` is what OTEL_EXPORTER_OTLP_ENDPOINT takes.
    Without ``decode_spans`` it only counts what arrives (a benchmark's sink, whose decoding
    would take the load generator's CPU)."""
    port = port or free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if decode_spans:
            receiver.spans.extend(decode(body))
        receiver.requests += 1
        receiver.received_bytes += len(body)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield receiver
    finally:
        await runner.cleanup()

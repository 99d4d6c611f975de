"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ticketing.shared import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, its spans kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", {}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()
    assert not tracing.enabled()

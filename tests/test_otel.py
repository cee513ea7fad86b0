"""OpenTelemetry: a retried call is one trace, and each resend's span carries http.request.resend_count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.instrumentation.httpx")

from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

from memcachier_async import AsyncAnalytics, RetryPolicy
from memcachier_async.testing import Emulator, FaultPlan

pytestmark = pytest.mark.anyio


_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The global tracer provider (set once per process, as OpenTelemetry allows) and httpx instrumented."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    _EXPORTER.clear()
    try:
        yield _EXPORTER
    finally:
        instrumentor.uninstrument()


async def test_a_retried_call_is_one_trace_with_resend_counts(
    spans: InMemorySpanExporter,
) -> None:
    """Two 503s then a 200 over real sockets: three CLIENT spans under one call span, resends 1 and 2."""
    plan = FaultPlan().script("stats", "unavailable", "unavailable")
    emulator = Emulator(faults=plan)
    async with emulator.serve() as base_url:
        fast = RetryPolicy(initial_backoff=0.0, max_backoff=0.0)
        async with AsyncAnalytics(
            emulator.username,
            emulator.password,
            base_url=base_url,
            retry=fast,
            cache_id=emulator.cache.cache_id,
        ) as api:
            await api.stats()
    emulator.close()
    finished = spans.get_finished_spans()
    (call,) = [s for s in finished if s.name == "memcachier stats"]
    attempts = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 3
    assert {s.context.trace_id for s in attempts} == {call.context.trace_id}
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    attempts.sort(key=lambda s: s.start_time or 0)
    counts = [(s.attributes or {}).get("http.request.resend_count") for s in attempts]
    assert counts == [None, 1, 2]
    assert call.parent is None


@pytest.fixture
def provider() -> TracerProvider:
    """The process's SDK tracer provider (set once per process, as OpenTelemetry allows)."""
    from opentelemetry import trace

    found = trace.get_tracer_provider()
    if not isinstance(found, TracerProvider):
        found = TracerProvider()
        found.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(found)
    _EXPORTER.clear()
    return found


async def test_instrument_client_on_http_client_gives_a_span_per_call(
    provider: TracerProvider,
) -> None:
    """HTTPXClientInstrumentor().instrument_client(api.http_client): one CLIENT span
    for each call the SDK makes (login, stats, create), each the parent of the
    SDK's own call span."""
    emulator = Emulator()
    async with (
        emulator.serve() as base_url,
        AsyncAnalytics(emulator.username, emulator.password, base_url=base_url) as api,
    ):
        HTTPXClientInstrumentor().instrument_client(api.http_client, tracer_provider=provider)
        try:
            await api.stats()
            await api.stats()
            await api.create_credential()
        finally:
            HTTPXClientInstrumentor().uninstrument_client(api.http_client)
    emulator.close()
    finished = _EXPORTER.get_finished_spans()
    client_spans = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert [s.name for s in client_spans] == ["GET", "GET", "GET", "POST"]
    calls = [s for s in finished if s.name.startswith("memcachier ")]
    assert [s.name for s in calls] == [
        "memcachier login",
        "memcachier stats",
        "memcachier stats",
        "memcachier create_credential",
    ]
    parents = {s.context.span_id for s in client_spans}
    assert all(s.parent is not None and s.parent.span_id in parents for s in calls)

"""OpenTelemetry, when it is installed: one span per call, the attempts under it.

opentelemetry-instrumentation-httpx makes a CLIENT span for each request an
``httpx.AsyncHTTPTransport`` sends, that is, for each attempt. Without a
parent they would be unrelated root spans. So the retry layer opens one
INTERNAL span per call (``memcachier <endpoint>``) around its attempts:
a retried call is one trace. And the attempt's span gets
``http.request.resend_count`` (the semantic conventions' name) through
httpcore's public ``trace`` request extension, which httpcore calls inside
the attempt's span, the current span at that moment.

Without ``opentelemetry-api`` (the ``otel`` extra) this module does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["ENABLED", "call_span", "tracer", "with_resend_count"]

try:  # optional: the otel extra
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised when opentelemetry is absent
    _trace = None  # type: ignore[assignment]

ENABLED = _trace is not None

RESEND_COUNT = "http.request.resend_count"
_TRACE_EXTENSION = "trace"


def tracer() -> Any | None:
    """This library's tracer, or ``None`` while no SDK tracer provider is configured.

    Asked once per call: a provider set later is found on the next call.
    Without one a span would record nothing, so none is made.
    """
    if _trace is None:  # pragma: no cover - without opentelemetry
        return None
    provider = _trace.get_tracer_provider()
    if isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer("memcachier_async")


def call_span(tracer: Any, method: str, endpoint: str | None) -> AbstractContextManager[Any]:
    """The span of one whole call (every attempt and wait), current while it runs."""
    attributes = {"http.request.method": method}
    if endpoint is not None:
        attributes["memcachier.endpoint"] = endpoint
    name = f"memcachier {endpoint or method}"
    span: AbstractContextManager[Any] = tracer.start_as_current_span(
        name, kind=_trace.SpanKind.INTERNAL, attributes=attributes
    )
    return span


def with_resend_count(extensions: Mapping[str, Any], resends: int) -> dict[str, Any]:
    """``extensions`` with a ``trace`` callback that tags the attempt's span
    with ``http.request.resend_count`` (chaining a ``trace`` already there)."""
    previous: Callable[[str, Mapping[str, Any]], Awaitable[None]] | None = extensions.get(
        _TRACE_EXTENSION
    )
    tagged = False

    async def tag(event: str, info: Mapping[str, Any]) -> None:
        nonlocal tagged
        if not tagged and _trace is not None:
            tagged = True
            span = _trace.get_current_span()
            if span.is_recording():
                span.set_attribute(RESEND_COUNT, resends)
        if previous is not None:
            await previous(event, info)

    return {**extensions, _TRACE_EXTENSION: tag}

"""Prometheus metrics of the SDK's own calls: retries, and call latency.

::

    from memcachier_async.contrib.prometheus import ClientMetrics

    metrics = ClientMetrics()      # in prometheus_client's default registry
    metrics.install()              # every client of the process, from now on

Two metrics, fed by the SDK's ``on_request``/``on_retry`` hooks
(:func:`memcachier_async.add_hooks`):

- ``memcachier_client_retries_total{endpoint, reason}``: a counter of
  retries, ``reason`` as the retry layer names it (``"503"``,
  ``"ConnectTimeout"``);
- ``memcachier_client_call_duration_seconds{endpoint, outcome}``: a
  histogram of whole calls (every attempt and wait), ``outcome`` ``"ok"``
  or the exception's class name.

Labels never carry a cache id, a username or a URL, so their number stays
small. Needs ``prometheus-client`` (the ``prometheus`` extra).
"""

from __future__ import annotations

from types import TracebackType

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from memcachier_async import RequestEvent, RetryEvent, add_hooks, remove_hooks

__all__ = ["LATENCY_BUCKETS", "ClientMetrics"]

#: Seconds: from a fast answer on a warm connection to a call that spent its deadline retrying.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ClientMetrics:
    """The retries counter and call latency histogram, registered in ``registry``.

    :meth:`install` starts counting every client's calls (also as ``with
    metrics:``); :meth:`uninstall` stops. Installs nest: counting stops at
    the last ``uninstall``. The metrics stay registered.
    """

    def __init__(
        self, registry: CollectorRegistry | None = REGISTRY, *, namespace: str = "memcachier"
    ) -> None:
        self.retries = Counter(
            "client_retries",
            "Retries of MemCachier Analytics API calls, by endpoint and reason.",
            ["endpoint", "reason"],
            namespace=namespace,
            registry=registry,
        )
        self.latency = Histogram(
            "client_call_duration_seconds",
            "Duration of MemCachier Analytics API calls (every attempt and wait), "
            "by endpoint and outcome.",
            ["endpoint", "outcome"],
            namespace=namespace,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._installs = 0

    def on_request(self, event: RequestEvent) -> None:
        """The ``on_request`` hook: one observation of the call's duration."""
        self.latency.labels(event.endpoint, event.outcome).observe(event.duration)

    def on_retry(self, event: object) -> None:
        """The ``on_retry`` hook: one retry counted."""
        if isinstance(event, RetryEvent):
            self.retries.labels(event.endpoint or "unknown", event.reason).inc()

    def install(self) -> None:
        """Count every client's calls from now on."""
        self._installs += 1
        if self._installs == 1:
            add_hooks(on_request=self.on_request, on_retry=self.on_retry)

    def uninstall(self) -> None:
        """Undo one :meth:`install`; the last one stops counting (the metrics keep their values)."""
        if self._installs == 0:
            return
        self._installs -= 1
        if self._installs == 0:
            remove_hooks(on_request=self.on_request, on_retry=self.on_retry)

    def __enter__(self) -> ClientMetrics:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

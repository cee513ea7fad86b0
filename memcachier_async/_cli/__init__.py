"""The application layer: the ``memcachier-analytics`` command and the Prometheus exporter.

May import the SDK and ``memcachier_async.testing``; nothing in the SDK imports this package.
"""

from memcachier_async._cli.app import main

__all__ = ["main"]

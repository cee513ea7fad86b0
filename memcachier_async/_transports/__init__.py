"""Transports: how a request reaches the server (pool, aiohttp, direct send), and retries.

May import only the foundation modules ``memcachier_async._errors`` and ``_version``;
the SDK imports this package, never the reverse.
"""

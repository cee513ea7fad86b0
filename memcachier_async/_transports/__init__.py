"""Transports: how a request reaches the server, and retries.

``core`` holds the retry rules (no I/O); ``sender`` the SDK's own senders
(one retry loop; ``pool`` + ``h1`` for the default backend, ``aiohttp``
for the other); ``retry`` the same rules as an httpx transport, for a
client that is not the SDK's own (with ``direct`` building its requests).

May import only the foundation modules ``memcachier_async._errors`` and ``_version``;
the SDK imports this package, never the reverse.
"""

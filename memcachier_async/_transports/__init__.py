"""Transports: retries as an httpx transport, and the engines under it.

``core`` holds the retry rules (no I/O) and ``retry`` drives them as an
httpx transport, :class:`~.retry.RetryTransport`, reading every body within
its bound (``body``); ``aiohttp`` is an httpx transport over aiohttp (the
stock ``httpx.AsyncHTTPTransport`` is the other engine). Nothing here
speaks HTTP itself: httpcore or aiohttp write and parse the bytes.

May import only the foundation modules ``memcachier_async._errors`` and ``_version``;
the SDK imports this package, never the reverse.
"""

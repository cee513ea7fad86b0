"""The emulator of the MemCachier Analytics API (public names: ``memcachier_async.testing``).

May import the SDK (``_protocol`` for the endpoint table); the SDK never imports it.
"""

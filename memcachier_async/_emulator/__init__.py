"""The emulator of the MemCachier Analytics API.

Public names live in ``memcachier_async.testing``.
"""

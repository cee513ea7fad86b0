"""Optional integrations built on the SDK's public surface.

Each module needs its own extra (``memcachier_async.contrib.prometheus``:
``pip install 'memcachier-async[prometheus]'``). Contrib may import the SDK
(``memcachier_async``); the SDK never imports contrib.
"""

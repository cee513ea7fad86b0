"""``python -m memcachier_async._cli``: the ``memcachier-analytics`` command."""

from .app import main

main()

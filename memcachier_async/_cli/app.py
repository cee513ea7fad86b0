"""The ``memcachier-analytics`` command group.

Each command group lives in its own module of this package (``read``:
stats and history; ``manage``: flush and credentials; ``watch``; ``export``;
``demo``: demo and emulator) and is attached here by its ``register``
function. Shared options and error handling are in ``common``, output
formatting in ``render``.

Needs the ``cli`` extra (click and rich); the ``emulator`` extra comes with it.
"""

from __future__ import annotations

import sys

try:
    import click
    import rich  # noqa: F401  (checked here so the message below names the extra)
except ImportError:  # pragma: no cover - depends on the environment
    # Run as the console script without the extra: say what to install.
    sys.exit(
        "memcachier-analytics needs the cli extra: python -m pip install 'memcachier-async[cli]'"
    )

from memcachier_async._version import __version__

from . import advise, demo, export, manage, read, watch
from .common import configure_logging, interrupted


class _Group(click.Group):
    """The command group; Ctrl-C anywhere in a command exits 130, without ``Aborted!``."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise interrupted() from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memcachier-analytics")
@click.option(
    "--verbose",
    "-v",
    count=True,
    help="Show retries on stderr (-vv: every request), and the traceback of an unexpected failure.",
)
def main(verbose: int) -> None:
    """Read stats and history, flush and manage credentials of MemCachier caches.

    Start with `memcachier-analytics demo`: it runs against a local
    emulator, no account needed.
    """
    # Undone when the command ends: the CLI may run inside another program (tests).
    click.get_current_context().call_on_close(configure_logging(verbose))


for _module in (read, manage, watch, advise, export, demo):
    _module.register(main)

"""The ``flush`` and ``credentials`` commands: the calls that change a cache."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.text import Text

from memcachier_async._errors import ServerError

from . import render as r
from .clients import one_cache_name, open_clients
from .common import (
    EXIT_API,
    CliError,
    F,
    Selection,
    confirm,
    emit_json,
    epilog,
    json_option,
    make_console,
    run_async,
    target_options,
)

# --- flush -----------------------------------------------------------------------


@click.command(
    epilog=epilog(
        "memcachier-analytics flush --emulator --yes",
        "memcachier-analytics flush --config caches.toml --cache web",
    )
)
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def flush(selection: Selection, yes: bool, as_json: bool) -> None:
    """Remove every item from a cache (the credential needs the flush capability).

    If some servers do not answer, the others may have been flushed: their
    names are reported and the exit code is 4.
    """

    # Asked before the event loop runs: there, Ctrl-C at the prompt ends it at once.
    if not yes:
        confirm(f"Flush every item of cache {one_cache_name(selection)}?")

    async def main() -> None:
        async with open_clients(selection) as (client,):
            try:
                await client.api.flush()
            except ServerError as error:
                if not error.servers:
                    raise
                _partial_flush(client.name, error.servers, as_json)
        if as_json:
            emit_json({"cache": client.name, "flushed": True, "failed_servers": []})
        else:
            make_console().print(f"Flushed cache {client.name}.")

    run_async(main)


def _partial_flush(cache: str, servers: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        emit_json({"cache": cache, "flushed": False, "failed_servers": list(servers)})
    raise CliError(
        f"flush of cache {cache} failed on {len(servers)} server(s): {', '.join(servers)}; "
        "the other servers may have been flushed",
        EXIT_API,
    )


# --- credentials -----------------------------------------------------------------


@click.group(
    epilog=epilog(
        "memcachier-analytics credentials list --emulator",
        "memcachier-analytics credentials create --emulator",
        "memcachier-analytics credentials update USERNAME --no-flush --write",
        "memcachier-analytics credentials promote USERNAME",
        "memcachier-analytics credentials delete USERNAME --yes",
    )
)
def credentials() -> None:
    """List, create, update, promote and delete a cache's credentials."""


@credentials.command("list")
@target_options
@json_option
def credentials_list(selection: Selection, as_json: bool) -> None:
    """Every credential of the cache and its capabilities."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            found = await client.api.list_credentials()
        if as_json:
            emit_json([r.credential_json(c) for c in found])
        else:
            make_console().print(r.credentials_table(found))

    run_async(main)


@credentials.command("create")
@target_options
@json_option
def credentials_create(selection: Selection, as_json: bool) -> None:
    """Create a credential and print its password: the only time it is shown."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            created = await client.api.create_credential()
        if as_json:
            emit_json(r.credential_json(created))
            return
        console = make_console()
        console.print(
            r.mapping_rows(
                {
                    "username": created.sasl_username,
                    "password": created.sasl_password,
                    "write": r.yes_no(created.write_capability),
                    "flush": r.yes_no(created.flush_capability),
                    "api": r.yes_no(created.api_capability),
                }
            )
        )
        console.print(
            Text("Store the password now: the API never shows it again.", style="bold yellow")
        )

    run_async(main)


def _flag(name: str, what: str) -> Callable[[F], F]:
    return click.option(
        f"--{name}/--no-{name}",
        default=None,
        help=f"Allow or deny {what} (unchanged when not given).",
    )


@credentials.command(
    "update",
    epilog=epilog(
        "memcachier-analytics credentials update 4A1B2C --no-flush",
        "memcachier-analytics credentials update 4A1B2C --write --api --no-flush",
    ),
)
@click.argument("credential", metavar="USERNAME")
@_flag("write", "writing to the cache")
@_flag("flush", "flushing the cache")
@_flag("api", "this API")
@target_options
@json_option
def credentials_update(
    selection: Selection,
    credential: str,
    write: bool | None,
    flush: bool | None,
    api: bool | None,
    as_json: bool,
) -> None:
    """Change what credential USERNAME may do; the other capabilities are kept."""
    if write is None and flush is None and api is None:
        raise click.UsageError(
            "give at least one of --write/--no-write, --flush/--no-flush, --api/--no-api"
        )

    async def main() -> None:
        async with open_clients(selection) as (client,):
            now = await client.api.update_credential(
                credential, write_capability=write, flush_capability=flush, api_capability=api
            )
        if as_json:
            emit_json({"sasl_username": credential, **r.capabilities_json(now)})
        else:
            make_console().print(r.capabilities_table(credential, now))

    run_async(main)


@credentials.command("promote")
@click.argument("credential", metavar="USERNAME")
@target_options
@json_option
def credentials_promote(selection: Selection, credential: str, as_json: bool) -> None:
    """Make credential USERNAME the cache's primary one."""

    async def main() -> None:
        async with open_clients(selection) as (client,):
            promoted = await client.api.promote_credential(credential)
        if as_json:
            emit_json(r.credential_json(promoted))
        else:
            make_console().print(f"{r.safe(promoted.sasl_username)} is now the primary credential.")

    run_async(main)


@credentials.command("delete")
@click.argument("credential", metavar="USERNAME")
@target_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def credentials_delete(selection: Selection, credential: str, yes: bool, as_json: bool) -> None:
    """Delete credential USERNAME (applications using it lose access)."""

    if not yes:
        confirm(f"Delete credential {credential} of cache {one_cache_name(selection)}?")

    async def main() -> None:
        async with open_clients(selection) as (client,):
            await client.api.delete_credential(credential)
        if as_json:
            emit_json({"sasl_username": credential, "deleted": True})
        else:
            make_console().print(f"Deleted credential {credential}.")

    run_async(main)


def register(group: click.Group) -> None:
    """Add this module's commands to the ``memcachier-analytics`` group."""
    for command in (
        flush,
        credentials,
    ):
        group.add_command(command)

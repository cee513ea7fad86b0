"""Checked by `mypy --strict`, not run: the public API's types, as a user sees them."""

from __future__ import annotations

from datetime import datetime

from typing_extensions import assert_type

from memcachier_async import (
    AsyncAnalytics,
    Capabilities,
    Credential,
    HistoryRecord,
    NewCredential,
    ServerError,
    ServerStats,
    Stats,
    to_json,
)


async def types(api: AsyncAnalytics) -> None:
    assert_type(await api.login(), int)
    stats = await api.stats()
    assert_type(stats, Stats)
    for server, s in stats.items():
        assert_type(server, str)
        assert_type(s, ServerStats)
        assert_type(s.get_hits, int)
        datetime.isoformat(s.time)
    history = await api.history()
    assert_type(history, list[HistoryRecord])
    assert_type(history[0].memcachier_id + 1, int)
    datetime.isoformat(history[0].timestamp)
    assert_type(await api.list_credentials(), list[Credential])
    new = await api.create_credential()
    assert_type(new, NewCredential)
    assert_type(new.sasl_password, str)
    caps = await api.update_credential(new, flush_capability=False)
    assert_type(caps, Capabilities)
    assert_type(await api.promote_credential("name"), Credential)
    assert_type(await api.delete_credential(new), None)
    assert_type(await api.flush(), None)
    try:
        await api.flush()
    except ServerError as exc:
        assert_type(exc.servers, tuple[str, ...])
        assert_type(exc.status_code, int)
        assert_type(exc.headers["x-trace"], str)
    view = api.with_options(timeout=2.0, headers={"X-Request-Id": "r"})
    assert_type(view, AsyncAnalytics)
    assert_type(await view.stats(), Stats)
    assert_type(to_json(stats), bytes)
    assert_type(to_json(new, include_secrets=True), bytes)

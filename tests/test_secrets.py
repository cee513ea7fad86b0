"""Passwords never appear in repr, str, exception text or log records."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from memcachier_async import AsyncAnalytics, MemcachierError

pytestmark = pytest.mark.anyio

BASE = "https://analytics.memcachier.com/api/v1"
CLIENT_PASSWORD = "client-Pa55word-4242"
NEW_PASSWORD = "s3cr3t-Pa55w0rd-xyz"
SAMPLES = Path(__file__).parent / "samples"


def created(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((SAMPLES / "credential_created.json").read_text())
    assert body["sasl_password"] == NEW_PASSWORD
    body.update(changes)
    return body


async def test_no_password_in_reprs_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Every object and error a flow produces, and every DEBUG log record, is free of passwords."""
    caplog.set_level(logging.DEBUG, logger="memcachier_async")  # whatever a CLI test left
    seen: list[object] = []
    responses = [
        httpx.Response(200, json=created()),
        # Malformed bodies around a password: the DecodeError must not quote it.
        httpx.Response(200, json=created(primary="yes")),
        httpx.Response(200, json=created(sasl_password=12345678)),
        httpx.Response(200, json=created(sasl_username=None)),
        httpx.Response(401, text="Unauthorized"),
        httpx.Response(500, text="Server error"),
        httpx.Response(200, content=b"not json " + NEW_PASSWORD.encode()),
    ]
    with respx.mock(base_url=BASE) as router:
        router.post("/14/credentials").mock(side_effect=responses)
        api = AsyncAnalytics("user", CLIENT_PASSWORD, cache_id=14)
        seen.append(api)
        for _ in responses:
            try:
                seen.append(await api.create_credential())
            except MemcachierError as exc:
                seen.append(exc)
        await api.aclose()
    assert any(isinstance(x, MemcachierError) for x in seen)
    assert any(not isinstance(x, (MemcachierError, AsyncAnalytics)) for x in seen)
    texts = [repr(x) for x in seen] + [str(x) for x in seen]
    texts += [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    assert caplog.records, "expected DEBUG records from the client"
    for text in texts:
        assert CLIENT_PASSWORD not in text
        assert NEW_PASSWORD not in text
        assert "12345678" not in text

"""to_dict / to_json for every model, and models that FastAPI returns as they are."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from memcachier_async import (
    Capabilities,
    Credential,
    HistoryRecord,
    Insight,
    NewCredential,
    ServerStats,
    Stats,
    insight,
    to_dict,
    to_json,
)
from memcachier_async._serialize import MODELS, model_schema
from memcachier_async.testing import Emulator

pytestmark = pytest.mark.anyio


@pytest.fixture
def emulator() -> Any:
    emulator = Emulator(history_interval=1.0)
    emulator.drive_traffic(300)
    emulator.sample()
    yield emulator
    emulator.close()


def _is_utc_iso(value: Any) -> bool:
    return (
        isinstance(value, str) and value.endswith("+00:00") and bool(datetime.fromisoformat(value))
    )


async def test_stats_as_the_api_sends_them_with_iso_times(emulator: Emulator) -> None:
    """Stats become {"host:port": {field: int}}, with ``time`` as ISO 8601 UTC and JSON equal to the dict."""
    async with emulator.client() as api:
        stats = await api.stats()
    data = to_dict(stats)
    assert set(data) == set(stats)
    for name, server in stats.items():
        assert data[name]["get_hits"] == server.get_hits
        assert _is_utc_iso(data[name]["time"])
        assert datetime.fromisoformat(data[name]["time"]) == server.time
    assert json.loads(to_json(stats)) == data


async def test_history_credentials_capabilities(emulator: Emulator) -> None:
    """History records, credentials and capabilities turn into plain dicts of their fields."""
    async with emulator.client() as api:
        history = await api.history()
        credentials = await api.list_credentials()
    record = to_dict(history[0])
    assert isinstance(history[0], HistoryRecord)
    assert record["timestamp"] == history[0].timestamp.isoformat()
    assert record["memcachier_id"] == history[0].memcachier_id
    assert record["stats"]["time"] == history[0].stats.time.isoformat()
    listed = to_dict(credentials)
    assert listed[0]["sasl_username"] == credentials[0].sasl_username
    assert set(listed[0]) == {
        "cache_id",
        "id",
        "sasl_username",
        "uuid",
        "primary",
        "flush_capability",
        "write_capability",
        "api_capability",
    }
    assert to_dict(credentials[0].capabilities) == {
        "flush_capability": credentials[0].flush_capability,
        "write_capability": credentials[0].write_capability,
        "api_capability": credentials[0].api_capability,
    }


async def test_a_new_password_only_with_include_secrets(emulator: Emulator) -> None:
    """NewCredential.sasl_password is left out unless include_secrets=True, also inside lists."""
    async with emulator.client() as api:
        created = await api.create_credential()
    assert isinstance(created, NewCredential)
    assert "sasl_password" not in to_dict(created)
    assert created.sasl_password.encode() not in to_json(created)
    assert created.sasl_password.encode() not in to_json([created])
    assert to_dict(created, include_secrets=True)["sasl_password"] == created.sasl_password
    assert to_dict([created], include_secrets=True)[0]["sasl_password"] == created.sasl_password
    # The choice does not stick: the next call is secret-free again.
    assert "sasl_password" not in to_dict(created)


async def test_insight_and_memory(emulator: Emulator) -> None:
    """An Insight carries its seconds and ISO bounds; memory usage nests its fullest server."""
    async with emulator.client() as api:
        first = await api.stats()
        emulator.drive_traffic(100)
        second = await api.stats()
    change = insight(first, second)
    data = json.loads(to_json(change))
    assert data["seconds"] == change.seconds
    assert data["total"]["request_rate"] == change.total.request_rate
    assert set(data["servers"]) == set(change.servers)
    if change.end is not None:
        assert datetime.fromisoformat(data["end"]) == change.end
    memory = to_dict(second.memory())
    assert memory["used"] == second.memory().used
    assert memory["fullest"]["server"] == second.memory().fullest.server  # type: ignore[union-attr]


def test_unknown_stats_fields_are_kept() -> None:
    """Integer fields the SDK does not model come out under ``extra``."""
    fields = {a.name: 1 for a in ServerStats.__attrs_attrs__ if a.name not in ("time", "extra")}
    stats = ServerStats(
        **fields, time=datetime(2020, 1, 1, tzinfo=timezone.utc), extra={"uptime": 5}
    )
    data = to_dict(stats)
    assert data["extra"] == {"uptime": 5}
    assert data["time"] == "2020-01-01T00:00:00+00:00"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_has_a_json_schema(model: type) -> None:
    """Each model's schema names every field to_dict writes (OpenAPI for FastAPI)."""
    schema = model_schema(model)
    assert schema["title"] == model.__name__
    if model is Stats:
        assert schema["additionalProperties"]["title"] == "ServerStats"
    else:
        assert "sasl_password" not in schema["properties"]
        assert set(schema["properties"]) >= {
            a.name for a in model.__attrs_attrs__ if a.name != "sasl_password"
        }


def _app(emulator: Emulator) -> FastAPI:
    app = FastAPI()

    @app.get("/stats")
    async def stats() -> Stats:
        async with emulator.client() as api:
            return await api.stats()

    @app.get("/credentials", response_model=list[Credential])
    async def credentials() -> Any:
        async with emulator.client() as api:
            return await api.list_credentials()

    @app.post("/credentials")
    async def create() -> NewCredential:
        async with emulator.client() as api:
            return await api.create_credential()

    @app.get("/capabilities", response_model=Capabilities)
    async def capabilities() -> Any:
        return Capabilities(flush_capability=True, write_capability=False, api_capability=True)

    @app.get("/insight")
    async def change() -> Insight:
        async with emulator.client() as api:
            first = await api.stats()
            second = await api.stats()
        return insight(first, second)

    @app.get("/wrong", response_model=Stats)
    async def wrong() -> Any:
        return {"not": "stats"}

    return app


async def test_fastapi_returns_models_and_documents_them(emulator: Emulator) -> None:
    """Return annotations and response_model work with the models, and OpenAPI describes them."""
    app = _app(emulator)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        stats = (await http.get("/stats")).json()
        assert set(stats) == {s.name for s in emulator.cache.servers}
        credentials = (await http.get("/credentials")).json()
        assert credentials[0]["sasl_username"]
        created = await http.post("/credentials")
        assert created.status_code == 200
        assert "sasl_password" not in created.json()  # never by accident
        assert (await http.get("/capabilities")).json()["write_capability"] is False
        assert "seconds" in (await http.get("/insight")).json()
        assert (await http.get("/wrong")).status_code == 500  # not a Stats: refused
        schema = (await http.get("/openapi.json")).json()
    responses = schema["paths"]["/credentials"]["post"]["responses"]["200"]
    body = json.dumps(responses)
    assert "sasl_username" in body
    assert "sasl_password" not in body


def test_pydantic_is_not_imported_by_the_sdk() -> None:
    """Importing the SDK and serialising a model loads neither pydantic nor FastAPI."""
    import subprocess
    import sys

    code = (
        "import sys, memcachier_async as m\n"
        "m.to_json(m.Capabilities(flush_capability=True, write_capability=True, api_capability=True))\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('pydantic', 'pydantic_core', 'fastapi')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

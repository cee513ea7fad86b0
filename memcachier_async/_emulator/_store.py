"""Optional persistence of caches and credentials in an SQLite file.

Stats are not kept: a restarted emulator's simulated servers start from
zero, as a restarted memcached does. Each write opens and closes its own
connection, so the file can be read by another process at any time and no
connection outlives a call.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

__all__ = ["Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS caches (
    cache_id INTEGER PRIMARY KEY,
    memcachier_id INTEGER NOT NULL,
    active INTEGER NOT NULL,
    servers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    sasl_username TEXT PRIMARY KEY,
    id INTEGER NOT NULL,
    cache_id INTEGER NOT NULL,
    sasl_password TEXT NOT NULL,
    uuid TEXT,
    is_primary INTEGER NOT NULL,
    flush_capability INTEGER NOT NULL,
    write_capability INTEGER NOT NULL,
    api_capability INTEGER NOT NULL
);
"""

_CREDENTIAL_COLUMNS = (
    "sasl_username",
    "id",
    "cache_id",
    "sasl_password",
    "uuid",
    "is_primary",
    "flush_capability",
    "write_capability",
    "api_capability",
)


class Store:
    """Caches and credentials in the SQLite file at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with self._transaction() as db:
            db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path)) as db, db:
            yield db

    def caches(self) -> list[dict[str, Any]]:
        """Every cache: ``cache_id``, ``memcachier_id``, ``active``, ``servers`` (specs)."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT cache_id, memcachier_id, active, servers FROM caches ORDER BY cache_id"
            ).fetchall()
        return [
            {
                "cache_id": cache_id,
                "memcachier_id": memcachier_id,
                "active": bool(active),
                "servers": json.loads(servers),
            }
            for cache_id, memcachier_id, active, servers in rows
        ]

    def credentials(self) -> list[dict[str, Any]]:
        """Every credential, as keyword arguments of the emulator's credential."""
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {', '.join(_CREDENTIAL_COLUMNS)} FROM credentials ORDER BY id"
            ).fetchall()
        result = []
        for row in rows:
            record = dict(zip(_CREDENTIAL_COLUMNS, row, strict=True))
            record["primary"] = bool(record.pop("is_primary"))
            for name in ("flush_capability", "write_capability", "api_capability"):
                record[name] = bool(record[name])
            result.append(record)
        return result

    def save_cache(
        self, cache_id: int, memcachier_id: int, active: bool, servers: list[dict[str, Any]]
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO caches VALUES (?, ?, ?, ?)",
                (cache_id, memcachier_id, int(active), json.dumps(servers)),
            )

    def save_credential(self, record: dict[str, Any]) -> None:
        values = dict(record)
        values["is_primary"] = int(values.pop("primary"))
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO credentials ({', '.join(_CREDENTIAL_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _CREDENTIAL_COLUMNS)})",
                tuple(values[c] for c in _CREDENTIAL_COLUMNS),
            )

    def delete_credential(self, username: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM credentials WHERE sasl_username = ?", (username,))

"""Persistent sandbox state: JSON documents by kind and id, and the call log, in one SQLite file.

Documents are cached in memory and written through, so a restarted sandbox keeps its pages, jobs
and call log while queries over thousands of pages stay fast.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    identity TEXT,
    item TEXT,
    client TEXT,
    status INTEGER,
    started REAL NOT NULL,
    finished REAL,
    usage TEXT
);
"""


class Store:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.dir = state_dir
        self.lock = threading.RLock()
        self._db = sqlite3.connect(state_dir / "sandbox.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        if "usage" not in columns:  # a state folder from before the call log kept usage
            self._db.execute("ALTER TABLE calls ADD COLUMN usage TEXT")
        self._docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq = 0
        for kind, doc_id, seq, body in self._db.execute("SELECT kind, id, seq, body FROM docs ORDER BY seq"):
            self._docs.setdefault(kind, {})[doc_id] = json.loads(body)
            self._seq = max(self._seq, seq)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.lock:
            yield

    # Documents -----------------------------------------------------------------------------------
    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        with self.lock:
            doc = self._docs.get(kind, {}).get(doc_id)
            return None if doc is None else json.loads(json.dumps(doc))

    def put(self, kind: str, doc_id: str, doc: dict[str, Any]) -> None:
        with self.lock:
            self._seq += 1
            body = json.dumps(doc, ensure_ascii=False)
            self._db.execute(
                "INSERT INTO docs (kind, id, seq, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                (kind, doc_id, self._seq, body),
            )
            self._docs.setdefault(kind, {})[doc_id] = json.loads(body)

    def delete(self, kind: str, doc_id: str) -> None:
        with self.lock:
            self._db.execute("DELETE FROM docs WHERE kind = ? AND id = ?", (kind, doc_id))
            self._docs.get(kind, {}).pop(doc_id, None)

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every document of a kind, in insertion order (copies)."""
        with self.lock:
            return [json.loads(json.dumps(d)) for d in self._docs.get(kind, {}).values()]

    def iter_raw(self, kind: str) -> list[dict[str, Any]]:
        """Every document of a kind without copying; callers must hold `lock` and not mutate."""
        return list(self._docs.get(kind, {}).values())

    # Call log ------------------------------------------------------------------------------------
    def call_started(
        self, provider: str, endpoint: str, identity: str | None, item: str | None, client: str | None
    ) -> int:
        with self.lock:
            cur = self._db.execute(
                "INSERT INTO calls (provider, endpoint, identity, item, client, started)"
                " VALUES (?,?,?,?,?,?)",
                (provider, endpoint, identity, item, client, time.time()),
            )
            return int(cur.lastrowid or 0)

    def call_finished(
        self, seq: int, status: int, identity: str | None = None, usage: str | None = None
    ) -> None:
        """Closes a call: its status, its identity if known only now, and what it used (JSON)."""
        with self.lock:
            self._db.execute(
                "UPDATE calls SET status = ?, finished = ?, identity = COALESCE(?, identity), usage = ?"
                " WHERE seq = ?",
                (status, time.time(), identity, usage, seq),
            )

    def calls(self, provider: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        sql = (
            "SELECT seq, provider, endpoint, identity, item, client, status, started, finished, usage"
            " FROM calls"
        )
        sql += " WHERE seq > ?"
        args: list[Any] = [since]
        if provider:
            sql += " AND provider = ?"
            args.append(provider)
        with self.lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        keys = ("seq", "provider", "endpoint", "identity", "item", "client", "status", "started", "finished")
        out = []
        for row in rows:
            call = dict(zip(keys, row[:-1], strict=True))
            call["usage"] = json.loads(row[-1]) if row[-1] else None
            out.append(call)
        return out

    def close(self) -> None:
        with self.lock:
            self._db.close()

"""One request cache for teacher, judge and retrieval: a SQLite file in WAL mode.

A key is the sha256 of the canonical JSON of a dict that the caller builds with
`RequestCache.key(**parts)`: backend, base url, model, revision, the full prompt or messages,
decoding parameters, sample index (for retrieval: backend, corpus hash, query, k, question id).
Secrets never go in: `key()` and `put()` raise on fields named like credentials (api_key, token,
authorization, ...) at any depth (`params={"api_key": ...}`, `headers={"Authorization": ...}`), so
an API key can never end up in the file.

Only successes are returned by `get`; failures go to their own table (`record_failure`) so a
re-run retries them. Requests sent through a batch interface (generation/batch.py) are recorded
with their batch id (`record_batch`) the moment it exists, so a run killed while the batch runs
collects that batch instead of paying for a new one. Safe under concurrent writers: one connection per thread and process,
WAL, and a busy timeout, so writers wait for each other instead of failing.

`CacheWriter(cache)` writes from a thread of its own, a transaction per burst of answers: an
event loop that receives a thousand answers a second hands each one over (`put` / `fail`, a
queue append) instead of waiting on SQLite, and each answer is on disk milliseconds later;
`flush()` waits until everything handed over is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SECRET_FIELDS = {
    "api_key", "apikey", "token", "hf_token", "openai_api_key", "authorization",
    "password", "secret", "access_token", "x_api_key",
}
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
  key TEXT PRIMARY KEY, error TEXT NOT NULL, count INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batches (key TEXT PRIMARY KEY, batch_id TEXT NOT NULL, created REAL NOT NULL);
"""


class CacheError(RuntimeError):
    """The cache file is damaged: the message names it and what deleting it costs."""


def _damaged(path: Path, e: Exception) -> CacheError:
    return CacheError(
        f"the request cache {path} is damaged ({e}): delete it (and its -wal / -shm files) and re-run. Finished "
        "trajectories, datasets, models and results are kept; the cached teacher, judge and retrieval answers "
        "in it are requested again (paid endpoints are paid again)"
    )


def _guarded(fn):
    """sqlite3.DatabaseError (not a database, malformed image) -> CacheError naming the file."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            damaged = not isinstance(e, sqlite3.OperationalError) or any(
                w in str(e) for w in ("malformed", "not a database", "corrupt"))
            if not damaged:  # locked, busy, disk I/O: not the file's content
                raise
            raise _damaged(self.path, e) from None

    return wrapper


def _secret_paths(value: Any, path: str = "") -> list[str]:
    """Where credential-named fields sit in `value`, at any depth: `params.api_key`, `headers.Authorization`,
    `messages[0].token`. Names compare case-blind with `-` as `_` (an `X-API-Key` or `api-key` header)."""
    if isinstance(value, dict):
        found = []
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if str(k).lower().replace("-", "_") in SECRET_FIELDS:
                found.append(where)
            found += _secret_paths(v, where)
        return found
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _secret_paths(v, f"{path}[{i}]")]
    return []


def _check_no_secrets(d: dict, what: str) -> None:
    bad = sorted(_secret_paths(d))
    if bad:
        raise ValueError(f"{what} must not contain credentials (field {', '.join(bad)}): leave keys out of the cache")


# The keys' canonical JSON (sorted keys, no whitespace): one encoder, built once.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


class RequestCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stats = {"hits": 0, "misses": 0, "failures": 0}
        self._conn()  # create the file and schema now, so errors show at construction

    # -- keys -----------------------------------------------------------------------------
    @staticmethod
    def key(**parts: Any) -> str:
        """sha256 hex of the canonical JSON of `parts` (sorted keys, no whitespace)."""
        _check_no_secrets(parts, "a cache key")
        return hashlib.sha256(_canonical_json(parts).encode("utf-8")).hexdigest()

    @staticmethod
    def keyer(**fixed: Any):
        """`key` for many requests that differ in a few parts: `keyer(**fixed)(**varying)` equals
        `key(**fixed, **varying)`, with the fixed parts checked for credentials once. The varying
        parts must be plain JSON values (str, numbers, lists of them); a dict among them is
        checked each time."""
        _check_no_secrets(fixed, "a cache key")

        def key(**varying: Any) -> str:
            if any(isinstance(v, dict) for v in varying.values()):
                _check_no_secrets(varying, "a cache key")
            return hashlib.sha256(_canonical_json({**fixed, **varying}).encode("utf-8")).hexdigest()

        return key

    # -- connection -----------------------------------------------------------------------
    @_guarded
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        self._retry(lambda: self._init(conn))
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @staticmethod
    def _init(conn: sqlite3.Connection) -> None:
        # Switching to WAL takes an exclusive lock that the busy handler does not always wait
        # for: hence the retry around it. WAL is persistent, so later connections skip it.
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)

    @staticmethod
    def _retry(fn, attempts: int = 50):
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    # -- API ------------------------------------------------------------------------------
    @_guarded
    def get(self, key: str) -> dict | None:
        row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        self._count("hits" if row else "misses")
        return json.loads(row[0]) if row else None

    @_guarded
    def get_many(self, keys: list[str]) -> list[dict | None]:
        """`get` of each key, in one query per 500 keys (a step's requests at once)."""
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            sql = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(part))})"
            found.update(self._conn().execute(sql, part).fetchall())
        with self._lock:
            self._stats["hits"] += sum(k in found for k in keys)
            self._stats["misses"] += sum(k not in found for k in keys)
        return [json.loads(found[k]) if k in found else None for k in keys]

    def put(self, key: str, value: dict) -> None:
        self.put_many([(key, value)])

    @_guarded
    def put_many(self, items: list[tuple[str, dict]]) -> None:
        """Several results in one transaction (one fsync instead of many)."""
        rows = []
        for key, value in items:
            _check_no_secrets(value, "a cached value")
            rows.append((key, json.dumps(value, ensure_ascii=False), time.time()))
        if rows:
            self._retry(lambda: self._write(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)", rows))

    @_guarded
    def record_failure(self, key: str, error: str) -> None:
        self._count("failures")
        self._retry(lambda: self._write(
            "INSERT INTO failures (key, error, count, updated) VALUES (?, ?, 1, ?) "
            "ON CONFLICT(key) DO UPDATE SET error = excluded.error, count = count + 1, updated = excluded.updated",
            [(key, error[:2000], time.time())]))

    @_guarded
    def failure(self, key: str) -> str | None:
        """The last recorded error for a key (for reports and tests); `get` never returns it."""
        row = self._conn().execute("SELECT error FROM failures WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @_guarded
    def record_batch(self, keys: list[str], batch_id: str) -> None:
        self._retry(lambda: self._write(
            "INSERT OR REPLACE INTO batches (key, batch_id, created) VALUES (?, ?, ?)",
            [(k, batch_id, time.time()) for k in keys]))

    @_guarded
    def batch_of(self, key: str) -> str | None:
        """The batch a request was sent in and whose results were not collected yet."""
        row = self._conn().execute("SELECT batch_id FROM batches WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @_guarded
    def forget_batch(self, keys: list[str]) -> None:
        self._retry(lambda: self._write("DELETE FROM batches WHERE key = ?", [(k,) for k in keys]))

    def _write(self, sql: str, rows: list[tuple]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def stats(self) -> dict[str, int]:
        """Counts in this process since construction: hits, misses, failures."""
        with self._lock:
            return dict(self._stats)

    @_guarded
    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class CacheWriter:
    """Successes and failures written by a background thread, each burst in one transaction."""

    def __init__(self, cache: RequestCache):
        self.cache = cache
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cache-writer", daemon=True)
        self._thread.start()

    def put(self, key: str, value: dict) -> None:
        _check_no_secrets(value, "a cached value")
        self._hand(("put", key, value))

    def fail(self, key: str, error: str) -> None:
        self._hand(("fail", key, error))

    def _hand(self, item: tuple) -> None:
        with self._done:
            self._pending += 1
        self._q.put(item)

    def flush(self) -> None:
        """Wait until every answer handed over is written; a write error is raised here."""
        with self._done:
            self._done.wait_for(lambda: self._pending == 0 or self._error is not None)
            if self._error is not None:
                raise self._error

    def close(self) -> None:
        self.flush()
        self._q.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            burst = [item]
            while len(burst) < 1024:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                burst.append(nxt)
            try:
                self.cache.put_many([(k, v) for kind, k, v in burst if kind == "put"])
                for kind, k, error in burst:
                    if kind == "fail":
                        self.cache.record_failure(k, error)
            except BaseException as e:  # noqa: BLE001 - handed to the caller at flush()
                self._error = e
            with self._done:
                self._pending -= len(burst)
                self._done.notify_all()

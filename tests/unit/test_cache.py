"""The request cache: keys, hits and misses, failures kept apart, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading

import pytest

from steper_bench.cache import RequestCache


def test_key_is_canonical_and_sensitive():
    k = RequestCache.key(backend="openai", model="m", prompt="p", params={"temperature": 0, "top_p": 1})
    assert k == RequestCache.key(params={"top_p": 1, "temperature": 0}, prompt="p", model="m", backend="openai")
    assert k != RequestCache.key(backend="openai", model="m", prompt="p ", params={"temperature": 0, "top_p": 1})
    assert len(k) == 64 and int(k, 16) >= 0


def test_hit_miss_and_stats(tmp_path):
    c = RequestCache(tmp_path / "c.sqlite")
    k = c.key(prompt="hello", sample_index=0)
    assert c.get(k) is None
    c.put(k, {"text": "world", "tokens": 2})
    assert c.get(k) == {"text": "world", "tokens": 2}
    assert c.get(c.key(prompt="hello", sample_index=1)) is None
    assert c.stats() == {"hits": 1, "misses": 2, "failures": 0}
    # A second instance (a later run) sees the stored value; its stats start at zero.
    c2 = RequestCache(tmp_path / "c.sqlite")
    assert c2.get(k)["text"] == "world" and c2.stats()["hits"] == 1
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failures_are_recorded_but_never_returned(tmp_path):
    c = RequestCache(tmp_path / "c.sqlite")
    k = c.key(prompt="x")
    c.record_failure(k, "HTTP 500 after 6 retries")
    c.record_failure(k, "timeout after 6 retries")
    assert c.get(k) is None and c.failure(k) == "timeout after 6 retries"
    assert c.stats() == {"hits": 0, "misses": 1, "failures": 2}
    c.put(k, {"text": "ok"})  # a later success is served
    assert c.get(k) == {"text": "ok"}


@pytest.mark.parametrize("field", ["api_key", "Authorization", "token", "openai_api_key"])
def test_credentials_never_enter_the_cache(tmp_path, field):
    c = RequestCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match="credentials"):
        c.key(model="m", **{field: "sk-secret"})
    with pytest.raises(ValueError, match="credentials"):
        c.put(c.key(model="m"), {"text": "t", field: "sk-secret"})
    assert b"sk-secret" not in (tmp_path / "c.sqlite").read_bytes()


def _writer(path: str, proc: int, threads: int, n: int, errors) -> None:
    cache = RequestCache(path)

    def work(t: int) -> None:
        try:
            for i in range(n):
                cache.put(cache.key(proc=proc, thread=t, i=i), {"v": f"{proc}-{t}-{i}"})
        except Exception as e:  # surfaced to the parent
            errors.put(repr(e))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_concurrent_writers_processes_and_threads(tmp_path):
    path, procs, threads, n = str(tmp_path / "c.sqlite"), 2, 4, 200
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    ps = [ctx.Process(target=_writer, args=(path, p, threads, n, errors)) for p in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(timeout=120)
        assert p.exitcode == 0
    errs = []
    while not errors.empty():
        errs.append(errors.get())
    assert errs == []  # in particular no "database is locked"
    c = RequestCache(path)
    assert len(c) == procs * threads * n
    for p in range(procs):
        for t in range(threads):
            for i in (0, n // 2, n - 1):
                assert c.get(c.key(proc=p, thread=t, i=i)) == {"v": f"{p}-{t}-{i}"}

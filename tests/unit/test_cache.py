"""The request cache: keys, hits and misses, failures kept apart, concurrent writers."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from steper_bench.cache import RequestCache


def test_key_is_canonical_and_sensitive():
    k = RequestCache.key(backend="openai", model="m", prompt="p", params={"temperature": 0, "top_p": 1})
    assert k == RequestCache.key(params={"top_p": 1, "temperature": 0}, prompt="p", model="m", backend="openai")
    assert k != RequestCache.key(backend="openai", model="m", prompt="p ", params={"temperature": 0, "top_p": 1})
    assert len(k) == 64 and int(k, 16) >= 0


def test_key_holds_field_names_and_types():
    # the same values under other names, or split otherwise across fields, are other requests
    assert RequestCache.key(a=1) != RequestCache.key(b=1)
    assert RequestCache.key(prompt="p", query="q") != RequestCache.key(prompt="q", query="p")
    assert RequestCache.key(params={"top_p": 1}) != RequestCache.key(params={"top_k": 1})
    assert RequestCache.key(k=1) != RequestCache.key(k="1") != RequestCache.key(k=[1])
    assert RequestCache.key(stop=["a", "b"]) != RequestCache.key(stop=["b", "a"])  # lists keep their order
    assert RequestCache.key(a=1, b=2) != RequestCache.key(a=1) != RequestCache.key()
    # field order, at any depth, is not part of a request
    deep = {"x": {"b": [1, {"d": 2, "c": 3}], "a": None}}
    assert RequestCache.key(**deep, z=0) == RequestCache.key(z=0, x={"a": None, "b": [1, {"c": 3, "d": 2}]})
    # the sha256 of the canonical JSON (sorted, no whitespace, UTF-8): the keys of an existing cache
    # file stay valid across processes and versions
    assert RequestCache.key(b="é", a=1) == hashlib.sha256('{"a":1,"b":"é"}'.encode()).hexdigest()
    # values JSON cannot hold count by their text (a Path as its string)
    assert RequestCache.key(path=Path("a/b")) == RequestCache.key(path="a/b")


def test_keyer_gives_the_same_keys_and_still_refuses_credentials():
    fixed = {"backend": "openai", "model": "m", "params": {"temperature": 0, "stop": ["\n"]}, "path": Path("a")}
    key = RequestCache.keyer(**fixed)
    for prompt, i in [("p", 0), ("é\n\"q\"", 3), ("", 1)]:
        assert key(prompt=prompt, sample_index=i) == RequestCache.key(**fixed, prompt=prompt, sample_index=i)
    assert key(prompt="p", extra=[1, "x"]) == RequestCache.key(**fixed, prompt="p", extra=[1, "x"])
    with pytest.raises(ValueError, match="params.api_key"):
        RequestCache.keyer(params={"api_key": "sk-x"})
    with pytest.raises(ValueError, match="headers.Authorization"):
        key(headers={"Authorization": "Bearer x"})


def test_get_many_is_get_of_each_key_with_the_same_stats(tmp_path):
    c = RequestCache(tmp_path / "c.sqlite")
    keys = [c.key(i=i) for i in range(1203)]  # more than one query's worth of keys
    c.put_many([(k, {"i": i}) for i, k in enumerate(keys) if i % 3])
    assert c.get_many(keys + keys[:2]) == [c.get(k) for k in keys + keys[:2]]
    assert c.stats() == {"hits": 2 * 803, "misses": 2 * 402, "failures": 0}  # keys[1] a hit, keys[0] not
    assert c.get_many([]) == []


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


@pytest.mark.parametrize("parts, where", [
    ({"params": {"temperature": 0, "api_key": "sk-secret"}}, "params.api_key"),
    ({"headers": {"Authorization": "Bearer sk-secret"}}, "headers.Authorization"),
    ({"headers": {"X-API-Key": "sk-secret"}}, "headers.X-API-Key"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "x", "token": "sk-secret"}]}, "messages[1].token"),
    ({"a": {"b": ({"c": {"hf_token": "sk-secret"}},)}}, "a.b[0].c.hf_token"),
])
def test_nested_credentials_are_refused(tmp_path, parts, where):
    c = RequestCache(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match=rf"^a cache key must not contain credentials \(field {re.escape(where)}\)"):
        c.key(model="m", **parts)
    with pytest.raises(ValueError, match=rf"^a cached value must not contain credentials \(field {re.escape(where)}\)"):
        c.put(c.key(model="m"), {"text": "t", **parts})
    assert len(c) == 0 and b"sk-secret" not in (tmp_path / "c.sqlite").read_bytes()
    # every credential is named, in one message
    with pytest.raises(ValueError, match=r"\(field api_key, headers\.Authorization\): leave keys out of the cache$"):
        c.key(api_key="k", headers={"Authorization": "b"})
    # names that only look alike are ordinary fields
    c.key(params={"max_tokens": 8, "tokens": 3}, headers={"Content-Type": "json"}, secret_santa=1)


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

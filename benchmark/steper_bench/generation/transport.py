"""One HTTP transport for every OpenAI-compatible call: teacher, student endpoints and the judge.

    t = Transport(["http://a:8000/v1", "http://b:8000/v1"], key, TransportSettings(concurrency=64))
    call = await t.post("/completions", body, parse=completion_text)  # Call(value=...) or Call(error=...)
    await t.close()

- Keep-alive HTTP/1.1 connections of our own (generation/http1.py). Measured on this project's
  2-core machine against a loopback server at concurrency 64, client CPU per request: this
  client about 0.12 ms, aiohttp (before it) 0.27-0.32 ms, httpx.AsyncClient 7-10 ms (its pool
  rescans every connection on each request), the openai SDK (httpx + pydantic) 2.7 ms.
- Retries are ours and counted (`stats`): 408 / 409 / 429 / 5xx, timeouts, connection errors and
  malformed 200s (not JSON, or JSON that `parse` cannot read: `Malformed`), with exponential
  backoff and jitter, honouring Retry-After-Ms / Retry-After. After a failure on one of several
  endpoints the retry goes at once to another one. 401 / 403 / 404 raise `Fatal`: no retry helps.
  A request that still fails comes back as Call(error=...) naming the endpoint.
- Several endpoints (replicas of one model): each request goes to the endpoint with the fewest
  outstanding requests. One that fails (a refused or cut connection, or FAIL_STREAK failures in a
  row) is taken out for a probe interval (0.5 s, doubling to 30 s), then gets one probe request;
  a success brings it back. The last endpoint in service is never taken out (backoff governs).
- `concurrency` bounds the requests in flight per endpoint; `auto` searches each endpoint's knee
  (generation/knee.py), up to `max_concurrency`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from steper_bench.generation import http1
from steper_bench.generation.knee import Knee

RETRYABLE_STATUS = {408, 409, 429}
FATAL_STATUS = {401, 403, 404}
FAIL_STREAK = 3  # failures in a row that take an endpoint out (a cut connection: at once)
PROBE_S, PROBE_MAX_S = 0.5, 30.0


def public_url(url: str) -> str:
    """The URL without user:password@ or query string (where keys sometimes travel)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class Fatal(Exception):
    """401 / 403 / 404: wrong key, model or URL; the message never holds the key."""

    def __init__(self, status: int, endpoint: str, message: str):
        super().__init__(f"{status} from {endpoint}: {message}")
        self.status, self.endpoint, self.message = status, endpoint, message


class Malformed(ValueError):
    """A 200 whose body is not the answer the caller expects: retried like a 5xx."""


@dataclass
class Call:
    value: Any = None
    error: str = ""  # non-empty: failed after its retries (or a non-retryable status)
    status: int = 0  # the last HTTP status seen (0: none)
    latency_s: float = 0.0
    endpoint: str = ""  # public URL of the endpoint that answered (or failed last)


@dataclass
class _Attempt:
    value: Any = None
    status: int = 0
    error: str = ""
    retry: bool = True  # worth another attempt
    retry_after: float | None = None
    cut: bool = False  # the connection failed: the endpoint is likely down


@dataclass
class TransportSettings:
    concurrency: int | str = 16  # per endpoint, or "auto"
    max_concurrency: int = 256  # the bound of `auto`
    timeout_s: float = 120.0
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


class Endpoint:
    """One replica: its URL, what is in flight, its counters and whether it is in service."""

    def __init__(self, url: str, settings: TransportSettings):
        self.url, self.public = url.rstrip("/"), public_url(url)
        auto = settings.concurrency == "auto"
        self.knee = Knee(settings.max_concurrency) if auto else None
        self.fixed = None if auto else int(settings.concurrency)
        self.outstanding = self.calls = self.ok = self.failed = self.taken_out = 0
        self.streak = 0  # failures in a row
        self.down_until = 0.0  # out of service until then (then: one probe request)
        self.probing = False
        self.interval = PROBE_S
        self._targets: dict[str, tuple[http1.Pool, str]] = {}

    def target(self, path: str, client: http1.Client) -> tuple[http1.Pool, str]:
        """The connection pool and request target of `path` on this endpoint, parsed once."""
        found = self._targets.get(path)
        if found is None:
            found = self._targets[path] = client.pool(self.url + path)
        return found

    @property
    def limit(self) -> int:
        return self.fixed if self.knee is None else self.knee.limit

    def counters(self) -> dict:
        return {
            "url": self.public,
            "calls": self.calls,
            "ok": self.ok,
            "failed": self.failed,
            "taken_out": self.taken_out,
            "limit": self.limit,
            "up": not self.probing,
        }


class Transport:
    def __init__(self, urls: list[str], api_key: str | None, settings: TransportSettings):
        if not urls:
            raise ValueError("no endpoint URL")
        self.s = settings
        self.endpoints = [Endpoint(u, settings) for u in urls]
        self._key = api_key if api_key and api_key != "EMPTY" else ""
        self._client = http1.Client({"Authorization": f"Bearer {api_key or 'EMPTY'}"}, settings.timeout_s)
        self._waiters: deque[tuple[asyncio.Future, Endpoint | None]] = deque()
        self.stats = {"calls": 0, "retries": 0}

    # -- public ------------------------------------------------------------------------------
    async def post(self, path: str, body: dict, parse: Callable[[Any], Any]) -> Call:
        """POST `body` as JSON to `path` of an endpoint; `parse(json)` turns a 200 into the value
        (raising Malformed, KeyError, IndexError or TypeError when it cannot)."""
        return await self.request("POST", path, json.dumps(body).encode(), parse)

    async def request(
        self,
        method: str,
        path: str,
        data: bytes | None,
        parse: Callable[[Any], Any],
        *,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Call:
        """Any call with the same retries and routing (the batch interface's uploads, polls and
        downloads); `raw`: `parse` gets the body's bytes instead of its JSON."""
        how = (method, data, content_type, raw)
        tries = self.s.max_retries + 1
        failed_on, start = None, None
        for attempt in range(tries):
            if attempt:
                self.stats["retries"] += 1
            ep = await self._acquire(avoid=failed_on)
            t0 = time.monotonic()
            start = start or t0  # latency: from the first send (the wait for a slot is ours, not the server's)
            try:
                a = await self._send(ep, path, how, parse)
            finally:
                self._release(ep)
            if not a.error:
                self._succeeded(ep, time.monotonic() - t0)
                return Call(a.value, status=a.status, latency_s=time.monotonic() - start, endpoint=ep.public)
            self._failed(ep, a.cut, throttled=a.status == 429 or a.error.startswith("timeout"))
            if not a.retry or attempt == tries - 1:
                break
            failed_on = ep
            if a.retry_after is not None or not self._other_up(ep):
                await asyncio.sleep(self._backoff(attempt, a.retry_after))
        note = f" (after {attempt + 1} attempt{'s' * (attempt > 0)})" if a.retry else ""
        return Call(
            error=f"{a.error} from {ep.public}{note}",
            status=a.status,
            latency_s=time.monotonic() - start,
            endpoint=ep.public,
        )

    def endpoint_counters(self) -> list[dict]:
        return [e.counters() for e in self.endpoints]

    async def close(self) -> None:
        self._client.close()
        await asyncio.sleep(0)  # the sockets' close callbacks run before the caller stops the loop

    # -- one HTTP exchange ---------------------------------------------------------------------
    async def _send(self, ep: Endpoint, path: str, how: tuple, parse) -> _Attempt:
        method, data, content_type, as_bytes = how
        self.stats["calls"] += 1
        ep.calls += 1
        pool, target = ep.target(path, self._client)
        try:
            r = await self._client.request(method, pool, target, data, content_type)
        except http1.Timeout:
            return _Attempt(error=f"timeout after {self.s.timeout_s}s")
        except http1.HTTPError as e:
            return _Attempt(error=f"connection error ({self._scrub(str(e))[:200]})", cut=True)
        status, raw = r.status, r.body
        if status == 200:
            try:
                return _Attempt(value=parse(raw if as_bytes else json.loads(raw)), status=200)
            except ValueError as e:  # json.JSONDecodeError and Malformed are ValueErrors
                why = str(e) if isinstance(e, Malformed) else "not JSON"
            except (KeyError, IndexError, TypeError, AttributeError) as e:
                why = f"unexpected JSON shape ({type(e).__name__}: {e})"
            return _Attempt(status=200, error=f"malformed response: {why}: {self._scrub(_snippet(raw))}")
        message = self._scrub(_error_message(raw))
        if 300 <= status < 400 and "location" in r.headers:  # not followed: the URL should name the API itself
            message += f" (redirect to {public_url(r.headers['location'])}: set base_url to it)"
        if status in FATAL_STATUS:
            raise Fatal(status, ep.public, message)
        retry = status >= 500 or status in RETRYABLE_STATUS
        return _Attempt(
            status=status,
            error=f"HTTP {status}: {message}",
            retry=retry,
            retry_after=_retry_after(r.headers) if retry else None,
        )

    # -- routing and bounds --------------------------------------------------------------------
    def _pick(self, now: float, avoid: Endpoint | None) -> Endpoint | None:
        """The in-service endpoint with the fewest outstanding requests and a free slot (a retry
        avoids the endpoint that just failed when another one can take it)."""
        best = None
        for e in self.endpoints:
            if e.down_until > now or (e.probing and e.outstanding) or e.outstanding >= e.limit:
                continue
            if best is None or (e is not avoid and (best is avoid or e.outstanding < best.outstanding)):
                best = e
        return best

    async def _acquire(self, avoid: Endpoint | None = None) -> Endpoint:
        """A slot on an endpoint: at once if one is free and nobody waits, else in arrival order
        (a finishing request hands its slot straight to the first waiter: `_dispatch`)."""
        ep = None if self._waiters else self._pick(time.monotonic(), avoid)
        if ep is not None:
            return self._take(ep)
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((fut, avoid))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(fut.result())  # handed a slot, then cancelled: give it back
            raise

    def _take(self, ep: Endpoint) -> Endpoint:
        ep.outstanding += 1
        if ep.knee is not None:
            ep.knee.sent(ep.outstanding)
        return ep

    def _release(self, ep: Endpoint) -> None:
        ep.outstanding -= 1
        if self._waiters:
            self._dispatch()

    def _dispatch(self) -> None:
        """Free slots to waiters, first come first served. There is always an endpoint in service
        (the last one is never taken out), so a waiter is woken by some request finishing."""
        now = time.monotonic()
        while self._waiters:
            fut, avoid = self._waiters[0]
            if fut.done():  # its task was cancelled
                self._waiters.popleft()
                continue
            ep = self._pick(now, avoid)
            if ep is None:
                return
            self._waiters.popleft()
            fut.set_result(self._take(ep))

    # -- endpoint health -----------------------------------------------------------------------
    def _succeeded(self, ep: Endpoint, latency: float) -> None:
        ep.ok += 1
        ep.streak = 0
        if ep.probing:
            ep.probing, ep.interval = False, PROBE_S
            self._dispatch()
        if ep.knee is not None and ep.knee.done(latency, failed=False):
            self._dispatch()

    def _failed(self, ep: Endpoint, cut: bool, throttled: bool) -> None:
        ep.failed += 1
        ep.streak += 1
        if ep.knee is not None and throttled:  # a 5xx or a bad answer says nothing of the knee
            ep.knee.done(0.0, failed=True)
        now = time.monotonic()
        if ep.down_until > now:  # already out: a request sent before it was taken out
            return
        if (cut or ep.streak >= FAIL_STREAK or ep.probing) and self._other_up(ep):
            ep.taken_out += not ep.probing
            ep.probing = True
            ep.down_until = now + ep.interval
            ep.interval = min(ep.interval * 2, PROBE_MAX_S)

    def _other_up(self, ep: Endpoint) -> bool:
        return any(e is not ep and not e.probing for e in self.endpoints)

    # -- helpers -------------------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.s.backoff_max_s * 2)
        return min(self.s.backoff_max_s, self.s.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _snippet(raw: bytes) -> str:
    return repr(raw[:120].decode("utf-8", "replace")) + ("..." if len(raw) > 120 else "")


def _error_message(raw: bytes) -> str:
    """The message of an error body ({"error": {"message": ...}} or any text), shortened."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(body, dict):
        err = body.get("error", body)
        body = (err.get("message") or err) if isinstance(err, dict) else err
    return str(body)[:300]


def _retry_after(headers) -> float | None:
    """Seconds to wait from Retry-After-Ms / Retry-After (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# -- what a 200 holds ------------------------------------------------------------------------------


def completion_text(body: Any) -> tuple[str, int]:
    """(text, completion tokens) of a /completions answer."""
    return _checked(body["choices"][0]["text"]), _tokens(body)


def chat_text(body: Any) -> tuple[str, int]:
    """(content, completion tokens) of a /chat/completions answer; a refusal is its text."""
    msg = body["choices"][0]["message"]
    if msg.get("refusal"):
        return f"(refusal) {msg['refusal']}", _tokens(body)
    return _checked(msg.get("content") or ""), _tokens(body)


def _checked(text: Any) -> str:
    if not isinstance(text, str):
        raise Malformed(f"the text is {type(text).__name__}, not a string")
    return text


def _tokens(body: dict) -> int:
    usage = body.get("usage") or {}
    return int(usage.get("completion_tokens") or 0) if isinstance(usage, dict) else 0

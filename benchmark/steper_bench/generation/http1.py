"""A small HTTP/1.1 client on asyncio protocols: keep-alive connections, one request at a time
on each, bytes in and bytes out. The transport (generation/transport.py) sends every call
through it.

Why not aiohttp: measured on this project's 2-core machine at concurrency 64 against a loopback
server, aiohttp costs about 0.3 ms of client CPU per request (its request/response objects,
payload writer task, cookie jar and timers); this client about 0.1 ms, the cost of a plain
asyncio load generator. A build sends hundreds of thousands of requests from one interpreter
whose GIL the loop's retrieval and prompt building share, so that difference is the build's pace.

What it does: http and https (the default TLS context: system certificates, SSL_CERT_FILE),
Content-Length and chunked response bodies, a body ended by the connection's close, keep-alive
with `Connection: close` honoured, a per-request timeout covering connect, send and receive.
What it leaves out: proxies (the aiohttp session it replaced ignored them too), redirects (a 3xx
comes back as it is; the transport's error names the Location), compressed bodies (no
Accept-Encoding is sent, so servers send plain bytes), cookies, pipelining.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit


class HTTPError(Exception):
    """The exchange failed: connection refused, reset or closed early, or an unreadable reply."""


class Timeout(HTTPError):
    pass


class Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body  # header names lower-cased


class _Conn(asyncio.Protocol):
    """One connection: a request's reply is parsed as bytes arrive and handed to `waiter`."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop):
        self.pool, self.loop = pool, loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.head: tuple[int, dict[str, str]] | None = None  # the reply's status and headers, once read
        self.need = -1  # the body's length (Content-Length); -1: chunked or until the close
        self.chunked = False
        self.rest = 0  # bytes received after the reply

    # -- asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for (or for a request given up): not reusable
            return
        self.buf += data
        try:
            reply = self._parse()
        except HTTPError as e:
            self._fail(e)
            return
        if reply is not None:
            self._done(reply)

    def eof_received(self):
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.waiter is not None and not self.waiter.done():
            if self.head is not None and not self.chunked and self.need < 0:  # a body ended by the close
                self._done(Reply(*self.head, bytes(self.buf)), reuse=False)
                return
            why = f": {exc}" if exc else ""
            self.waiter.set_exception(HTTPError(f"connection closed before the reply was complete{why}"))

    # -- one exchange --------------------------------------------------------------------------
    def send(self, head: bytes, body: bytes | None) -> asyncio.Future:
        self.waiter = self.loop.create_future()
        self.head, self.need, self.chunked, self.rest = None, -1, False, 0
        self.buf.clear()
        self.transport.write(head + body if body and len(body) < 65536 else head)
        if body and len(body) >= 65536:
            self.transport.write(body)
        return self.waiter

    def _parse(self) -> Reply | None:
        """The reply, once complete in the buffer (None until then); `self.rest`: bytes after it."""
        buf = self.buf
        while self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    raise HTTPError("reply headers longer than 64 KiB")
                return None
            status, headers = _head(bytes(buf[:end]))
            del buf[: end + 4]
            if 100 <= status < 200:  # an interim reply (100 Continue): the real one follows
                continue
            self.head = status, headers
            if status in (204, 304):
                self.need = 0
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self.chunked = True
            elif "content-length" in headers:
                try:
                    self.need = int(headers["content-length"])
                except ValueError:
                    raise HTTPError(f"bad Content-Length {headers['content-length']!r}") from None
        if self.chunked:
            if not buf.endswith(b"\r\n\r\n"):  # how a complete chunked body ends: no rescan before
                return None
            found = _dechunk(buf)
            if found is None:
                return None
            body, self.rest = found[0], len(buf) - found[1]
            return Reply(*self.head, body)
        if self.need < 0 or len(buf) < self.need:
            return None  # more to come (or, with no length, until the server closes)
        self.rest = len(buf) - self.need
        return Reply(*self.head, bytes(buf[: self.need]))

    def _done(self, reply: Reply, reuse: bool = True) -> None:
        # Bytes after the reply were not asked for: that connection is not reused.
        keep = reuse and not self.closed and not self.rest and reply.headers.get("connection", "").lower() != "close"
        self.waiter.set_result(reply)
        self.waiter = None
        if keep:
            self.buf.clear()
            self.pool.put_back(self)
        else:
            self.close()

    def _fail(self, e: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(e)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HTTPError(f"not an HTTP reply: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _dechunk(buf: bytearray) -> tuple[bytes, int] | None:
    """(body, bytes used) of a complete chunked reply at the start of `buf`; None while incomplete."""
    out, pos = bytearray(), 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HTTPError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:  # the last chunk, then optional trailer lines and an empty line
            end = buf.find(b"\r\n\r\n", eol)
            return None if end < 0 else (bytes(out), end + 4)
        start = eol + 2
        if len(buf) < start + size + 2:
            return None
        out += buf[start : start + size]
        pos = start + size + 2


class Pool:
    """Idle keep-alive connections to one origin (scheme, host, port)."""

    def __init__(self, url: str, tls: ssl.SSLContext | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url}")
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        default = parts.port is None or parts.port == (443 if self.tls else 80)
        self.authority = self.host if default else f"{self.host}:{self.port}"
        if ":" in self.host:  # IPv6 literal
            self.authority = f"[{self.host}]" + ("" if default else f":{self.port}")
        self.idle: list[_Conn] = []
        self.open: set[_Conn] = set()

    async def connect(self) -> _Conn:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Conn(self, loop), self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
        )
        self.open.add(conn)
        return conn

    def put_back(self, conn: _Conn) -> None:
        self.idle.append(conn)

    def discard(self, conn: _Conn) -> None:
        self.open.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        for conn in list(self.open):
            conn.close()
        self.idle.clear()


class Client:
    """Connection pools by origin; `await client.request(...)`: one exchange within `timeout_s`.

        pool, target = client.pool("http://host:8000/v1/completions")
        reply = await client.request("POST", pool, target, body, "application/json")
    """

    def __init__(self, headers: dict[str, str], timeout_s: float, tls: ssl.SSLContext | None = None):
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())  # sent with every request
        self.timeout_s, self.tls = timeout_s, tls
        self._pools: dict[str, Pool] = {}

    def pool(self, url: str) -> tuple[Pool, str]:
        """The pool of `url`'s origin and the request target (path and query) to send."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        p = self._pools.get(origin)
        if p is None:
            p = self._pools[origin] = Pool(origin, self.tls)
        return p, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def request(self, method: str, pool: Pool, target: str, body: bytes | None, content_type: str) -> Reply:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {pool.authority}\r\n{self.headers}"
            + (f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n" if body is not None else "")
            + "\r\n"
        ).encode("latin-1")
        conn = None
        deadline = _Deadline(asyncio.current_task())
        timer = asyncio.get_running_loop().call_later(self.timeout_s, deadline)
        try:
            conn = await pool.connect()
            return await conn.send(head, body)
        except asyncio.CancelledError:
            if conn is not None:
                conn.close()  # a reply may still be on its way: the connection is not reusable
            if not deadline.hit:
                raise  # cancelled by the caller
            if hasattr(deadline.task, "uncancel"):  # 3.11+: this cancellation is handled here
                deadline.task.uncancel()
            raise Timeout(f"timeout after {self.timeout_s}s") from None
        except OSError as e:  # refused, reset, unreachable, TLS
            if conn is not None:
                conn.close()
            raise HTTPError(f"{type(e).__name__}: {e}") from None
        finally:
            timer.cancel()

    def close(self) -> None:
        """Close every connection (the pools stay usable: a later request opens new ones)."""
        for p in self._pools.values():
            p.close()


class _Deadline:
    """The timer's callback: cancels the request's task and says it did."""

    __slots__ = ("hit", "task")

    def __init__(self, task: asyncio.Task):
        self.task, self.hit = task, False

    def __call__(self) -> None:
        if not self.task.done():
            self.hit = True
            self.task.cancel()

"""The transport's HTTP/1.1 client (generation/http1.py) against a raw socket server whose bytes
each test writes: keep-alive reuse, chunked and close-delimited bodies, replies split at every
byte, Connection: close, timeouts, early closes, refused connections, caller cancellation, TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import pytest
from steper_bench.generation import http1


class RawServer:
    """Answers each request (read up to its Content-Length) with `script(request_bytes)`: a list
    of byte strings written one by one (a float in the list: sleep that long; None: close)."""

    def __init__(self, script, tls: ssl.SSLContext | None = None):
        self.script, self.tls = script, tls
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    def url(self, path: str = "/v1/x") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0)
                req = head + await reader.readexactly(n)
                self.requests.append(req)
                for part in self.script(req):
                    if part is None:
                        writer.close()
                        return
                    if isinstance(part, float):
                        await asyncio.sleep(part)
                        continue
                    writer.write(part)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def reply(body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def run(coro):
    return asyncio.run(coro)


async def _ask(client: http1.Client, url: str, body: bytes | None = b'{"a": 1}', method: str = "POST"):
    pool, target = client.pool(url)
    return await client.request(method, pool, target, body, "application/json")


def test_keep_alive_reuses_one_connection_and_sends_the_request_as_expected():
    async def main():
        async with RawServer(lambda req: [reply(b'{"ok": true}', "X-Thing: 1")]) as srv:
            c = http1.Client({"Authorization": "Bearer k"}, timeout_s=5)
            replies = [await _ask(c, srv.url("/v1/completions?x=1")) for _ in range(3)]
            c.close()
            return srv, replies

    srv, replies = run(main())
    assert [(r.status, r.body, r.headers["x-thing"]) for r in replies] == [(200, b'{"ok": true}', "1")] * 3
    assert srv.connections == 1
    head = srv.requests[0].decode()
    assert head.startswith("POST /v1/completions?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{srv.port}\r\n" in head and "Authorization: Bearer k\r\n" in head
    assert "Content-Type: application/json\r\nContent-Length: 8\r\n" in head and head.endswith('\r\n\r\n{"a": 1}')


def test_a_get_has_no_body_headers():
    async def main():
        async with RawServer(lambda req: [reply(b"x")]) as srv:
            c = http1.Client({}, timeout_s=5)
            r = await _ask(c, srv.url(), body=None, method="GET")
            c.close()
            return srv, r

    srv, r = run(main())
    assert r.body == b"x" and b"Content-Length" not in srv.requests[0]


@pytest.mark.parametrize("split", [False, True])
def test_chunked_body_with_trailer_whole_or_one_byte_at_a_time(split):
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n")
    parts = [raw[i:i + 1] for i in range(len(raw))] if split else [raw]

    async def main():
        async with RawServer(lambda req: parts) as srv:
            c = http1.Client({}, timeout_s=5)
            out = [await _ask(c, srv.url()) for _ in range(2)]
            c.close()
            return srv, out

    srv, out = run(main())
    assert [r.body for r in out] == [b"hello, world"] * 2 and srv.connections == 1


def test_body_ended_by_close_and_connection_close_are_not_reused():
    scripts = iter([
        [b"HTTP/1.1 200 OK\r\n\r\nuntil the end", None],  # no length: the close ends it
        [reply(b"once", "Connection: close")],
        [reply(b"again")],
    ])

    async def main():
        async with RawServer(lambda req: next(scripts)) as srv:
            c = http1.Client({}, timeout_s=5)
            out = [(await _ask(c, srv.url())).body for _ in range(3)]
            c.close()
            return srv, out

    srv, out = run(main())
    assert out == [b"until the end", b"once", b"again"] and srv.connections == 3


def test_interim_100_reply_is_skipped_and_204_has_no_body():
    scripts = iter([[b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"real")], [b"HTTP/1.1 204 No Content\r\n\r\n"]])

    async def main():
        async with RawServer(lambda req: next(scripts)) as srv:
            c = http1.Client({}, timeout_s=5)
            out = [await _ask(c, srv.url()) for _ in range(2)]
            c.close()
            return out

    a, b = run(main())
    assert (a.status, a.body, b.status, b.body) == (200, b"real", 204, b"")


def test_timeout_then_a_fresh_connection_answers():
    answers = iter([[5.0], [reply(b"late but fine")]])

    async def main():
        async with RawServer(lambda req: next(answers)) as srv:
            c = http1.Client({}, timeout_s=0.3)
            loop = asyncio.get_running_loop()
            t = loop.time()
            with pytest.raises(http1.Timeout, match="timeout after 0.3s"):
                await _ask(c, srv.url())
            took = loop.time() - t
            r = await _ask(c, srv.url())
            c.close()
            return srv, took, r

    srv, took, r = run(main())
    assert 0.25 < took < 2 and r.body == b"late but fine" and srv.connections == 2


def test_close_before_the_reply_and_garbage_are_errors():
    scripts = iter([[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", None], [b"SPDY nonsense\r\n\r\n"],
                    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n\r\n"]])

    async def main():
        async with RawServer(lambda req: next(scripts)) as srv:
            c = http1.Client({}, timeout_s=5)
            errors = []
            for _ in range(3):
                with pytest.raises(http1.HTTPError) as e:
                    await _ask(c, srv.url())
                errors.append(str(e.value))
            c.close()
            return errors

    closed, garbage, chunk = run(main())
    assert "closed before the reply was complete" in closed
    assert "not an HTTP reply" in garbage and "bad chunk size" in chunk


def test_refused_connection_is_an_http_error():
    async def main():
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        c = http1.Client({}, timeout_s=5)
        with pytest.raises(http1.HTTPError, match="ConnectionRefusedError"):
            await _ask(c, f"http://127.0.0.1:{port}/v1/x")

    run(main())


def test_cancelling_the_caller_is_a_cancellation_not_a_timeout():
    async def main():
        async with RawServer(lambda req: [5.0]) as srv:
            c = http1.Client({}, timeout_s=30)
            task = asyncio.ensure_future(_ask(c, srv.url()))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            c.close()

    run(main())


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make a certificate")
def test_https_with_a_trusted_self_signed_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def main(client_tls):
        async with RawServer(lambda req: [reply(b"secret")], tls=server_tls) as srv:
            c = http1.Client({}, timeout_s=5, tls=client_tls)
            try:
                return [(await _ask(c, srv.url())).body for _ in range(2)], srv.connections
            finally:
                c.close()

    assert run(main(ssl.create_default_context(cafile=str(cert)))) == ([b"secret"] * 2, 1)
    with pytest.raises(http1.HTTPError, match="SSLCertVerificationError|CERTIFICATE_VERIFY_FAILED"):
        run(main(None))  # the default context does not trust it

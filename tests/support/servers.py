"""Local OpenAI-compatible servers for tests, on loopback only.

serve_transformers(model_dir) -> base_url
    A REAL `transformers serve` process with a local model (HF_HUB_OFFLINE=1), on a free port;
    waits for /health (bounded) and kills the process by its PID at exit. The model name to send
    is `str(model_dir)` (the served model is forced, so any name works).

scripted_server(handler) -> ScriptedServer (a str: the base_url, ending in /v1)
    A small asyncio HTTP/1.1 server whose answers a test scripts. `handler(req: Req) -> Reply`
    is called for every request (on a thread pool: it may block). Building blocks:

        Reply.text(req, "Paris.")                    an OpenAI-shaped 200 (completions or chat,
                                                     whichever path was called)
        Reply.text(req, '{"score": 1}')              fixed JSON content for judge tests
        Reply(status=429, headers={"Retry-After": "1"}), Reply(status=500)
        Reply(delay_s=30)  + a client timeout        a hang
        Reply(raw=b'{"choices": [')                  truncated JSON
        Reply(drop=True)                             connection closed without an answer
        sequence(h1, h2, ...)                        the i-th request gets handler i (last repeats)
        fixed_text("x", delay_s=0.05)                always the same text after a delay

    The server object also records every request (`server.requests`, `server.count`), and can
    go down and come back on the same port: `server.stop()`, `server.start()`, or
    `server.down_for(seconds)` (connections are refused meanwhile).

    Options: `capacity=B` serves at most B requests at once (a reply's delay is spent holding a
    slot; the rest wait in a queue: the capacity model of an inference server); `inline=True`
    calls the handler on the server's event loop (no thread hop: for fast, non-blocking
    handlers in benchmarks). `server.stats()` (also GET /_stats): requests, answered 200s,
    prompts answered more than once, the busy window (first arrival to last answer).

steps_teacher(steps, delay_s) -> Handler
    An IRCoT-shaped teacher for builds: each chain answers at its step `steps`.

serve_subprocess(handler_name, **options) -> RemoteServer (a str: the base_url)
    The same server in a child process (`python tests/support/servers.py`), so a benchmark's
    process CPU is the client's alone and a test can SIGKILL it: `.stats()`, `.kill()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# -- transformers serve ---------------------------------------------------------------------------


@contextlib.contextmanager
def serve_transformers(
    model_dir: str | os.PathLike, port: int | None = None, ready_timeout_s: float = 180.0
) -> Iterator[str]:
    """Run `transformers serve <model_dir>` on loopback; yield its base_url (".../v1")."""
    port = port or free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cli = Path(sys.executable).with_name("transformers")
    cmd = [str(cli), "serve", str(model_dir), "--host", LOOPBACK, "--port", str(port), "--device", "cpu"]
    log = tempfile.NamedTemporaryFile(prefix="transformers-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://{LOOPBACK}:{port}"
    try:
        _wait_ready(proc, f"{base}/health", ready_timeout_s, Path(log.name))
        yield f"{base}/v1"
    finally:
        _kill(proc)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen, url: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"transformers serve not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")


def _kill(proc: subprocess.Popen) -> None:
    """Stop the server by its PID (its own session: the group id is that PID)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


# -- scripted server ------------------------------------------------------------------------------


@dataclass
class Req:
    """One request as the server saw it."""

    index: int  # 0-based arrival order
    method: str
    path: str  # e.g. /v1/completions, /v1/chat/completions
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON (None if not JSON)
    time: float  # time.monotonic() at arrival
    raw: bytes = b""  # the body as sent (uploads)

    @property
    def is_chat(self) -> bool:
        return self.path.rstrip("/").endswith("/chat/completions")


@dataclass
class Reply:
    status: int = 200
    json: Any = None  # body, serialised as JSON
    raw: bytes | None = None  # body sent as is (e.g. truncated JSON); wins over json
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering (a hang if longer than the client timeout)
    drop: bool = False  # close the connection without answering

    @classmethod
    def text(cls, req: Req, text: str, *, delay_s: float = 0.0, finish_reason: str = "stop") -> Reply:
        """A 200 in the OpenAI shape of the path called (chat or completions)."""
        model = (req.body or {}).get("model", "scripted") if isinstance(req.body, dict) else "scripted"
        usage = {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())}
        if req.is_chat:
            choice = {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": text}}
            body = {"id": f"chatcmpl-{req.index}", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [choice], "usage": usage}
        else:
            choice = {"index": 0, "finish_reason": finish_reason, "text": text, "logprobs": None}
            body = {"id": f"cmpl-{req.index}", "object": "text_completion", "created": 0, "model": model,
                    "choices": [choice], "usage": usage}
        return cls(json=body, delay_s=delay_s)


Handler = Callable[[Req], Reply]


def fixed_text(text: str, delay_s: float = 0.0) -> Handler:
    return lambda req: Reply.text(req, text, delay_s=delay_s)


def sequence(*handlers: Handler) -> Handler:
    """Request i gets handlers[i]; the last handler answers every later request."""
    lock, counter = threading.Lock(), itertools.count()

    def handle(req: Req) -> Reply:
        with lock:
            i = next(counter)
        return handlers[min(i, len(handlers) - 1)](req)

    return handle


class ScriptedServer(str):
    """The base_url (a str, so it can go straight into a config) plus control and a request log.

    An asyncio HTTP/1.1 server (keep-alive, one write per answer) on its own thread: a few tens
    of microseconds per request, so benchmarks measure the client, not this server. Handlers
    run on a thread pool, so a handler may block (time.sleep) without stalling others.
    """

    def __new__(cls, handler: Handler, port: int | None = None, *, capacity: int | None = None,
                inline: bool = False):
        port = port or free_port()
        self = super().__new__(cls, f"http://{LOOPBACK}:{port}/v1")
        self.port, self.handler, self.capacity, self.inline = port, handler, capacity, inline
        self.requests: list[Req] = []
        self.answered: dict[str, int] = {}  # prompt (or messages) -> 200s written
        self._slots = None  # asyncio.Semaphore(capacity), made on the server's loop
        self._first = self._last = 0.0
        self._in_flight = self._max_in_flight = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="scripted")
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="scripted-server")
        self._thread.start()
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task] = set()
        return self

    @property
    def base_url(self) -> str:
        return str(self)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _log(self, method: str, path: str, headers: dict, body: Any, raw: bytes = b"") -> Req:
        with self._lock:
            req = Req(len(self.requests), method, path, headers, body, time.monotonic(), raw)
            self.requests.append(req)
        return req

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def stats(self) -> dict:
        with self._lock:
            repeated = sum(n - 1 for n in self.answered.values() if n > 1)
            return {"requests": len(self.requests), "answered": sum(self.answered.values()), "repeated": repeated,
                    "window_s": max(self._last - self._first, 0.0), "max_in_flight": self._max_in_flight}

    def _answered(self, req: Req, status: int) -> None:
        body = req.body if isinstance(req.body, dict) else {}
        if req.method != "POST":
            return
        with self._lock:
            self._last = time.monotonic()
            if status == 200:
                what = json.dumps(body.get("prompt", body.get("messages")))
                self.answered[what] = self.answered.get(what, 0) + 1

    def start(self) -> None:
        async def up():
            self._server = await asyncio.start_server(
                self._serve, LOOPBACK, self.port, reuse_address=True, backlog=256)
        self._run(up())

    def stop(self) -> None:
        """Stop listening (clients get 'connection refused'), cut open connections and hangs."""
        async def down():
            if self._server is not None:
                self._server.close()
                self._server = None
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
        self._run(down())

    def down_for(self, seconds: float) -> None:
        """Die now and come back on the same port after `seconds` (in the background)."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.call_later, seconds, self.start_soon)

    def start_soon(self) -> None:
        self._loop.create_task(asyncio.start_server(self._serve, LOOPBACK, self.port, reuse_address=True,
                                                    backlog=256)).add_done_callback(self._started)

    def _started(self, task: asyncio.Task) -> None:
        self._server = task.result()

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(task)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line.strip():
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers = {}
        while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length") or 0)
        raw = await reader.readexactly(n) if n else b""
        if path.endswith("/_stats"):
            return await self._write(writer, Reply(json=self.stats()))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = self._log(method, path, headers, body, raw)
        if not self._first and method == "POST":
            self._first = req.time
        if self.capacity and self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        if self._slots is not None and method == "POST":
            async with self._slots:  # queued until one of the B slots is free
                return await self._answer(req, writer)
        return await self._answer(req, writer)

    async def _answer(self, req: Req, writer: asyncio.StreamWriter) -> bool:
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            reply = self.handler(req) if self.inline else await self._loop.run_in_executor(self._pool, self.handler, req)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)  # cancelled by stop()
            if reply.drop:
                return False
            ok = await self._write(writer, reply)
            self._answered(req, reply.status)
            return ok
        finally:
            self._in_flight -= 1

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, reply: Reply) -> bool:
        data = reply.raw if reply.raw is not None else json.dumps(reply.json).encode()
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}",
                "Content-Type: application/json", f"Content-Length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await writer.drain()
        return True


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


@contextlib.contextmanager
def scripted_server(handler: Handler, port: int | None = None, **options) -> Iterator[ScriptedServer]:
    server = ScriptedServer(handler, port, **options)
    server.start()
    try:
        yield server
    finally:
        server.close()


# -- handlers for builds and benchmarks -------------------------------------------------------------


def models_list(req: Req) -> Reply:
    return Reply(json={"object": "list", "data": [{"id": "scripted", "object": "model"}]})


def steps_teacher(steps: int, delay_s: float = 0.0) -> Handler:
    """IRCoT-shaped answers: the sentences after the prompt's last "A:" are the chain so far; the
    next one is "Fact k is about <question words>.", or at step `steps` "So the answer is: yes."."""

    def handle(req: Req) -> Reply:
        body = req.body if isinstance(req.body, dict) else {}
        prompt = body.get("prompt") or (body.get("messages") or [{}])[-1].get("content")
        if not prompt:
            return models_list(req)
        chain = prompt.rsplit("\nA:", 1)[-1]
        done = chain.count(". ") + chain.rstrip().endswith(".")
        if done + 1 >= steps:
            return Reply.text(req, " So the answer is: yes.", delay_s=delay_s)
        question = prompt.rsplit("\nQ: ", 1)[-1].split("\nA:", 1)[0]
        words = " ".join(w for w in question.replace("?", " ").split()[:6] if w.isalnum())
        return Reply.text(req, f" Fact {done + 1} is about {words}.", delay_s=delay_s)

    return handle


HANDLERS: dict[str, Callable[..., Handler]] = {"steps": steps_teacher, "fixed": fixed_text}


# -- the same server in a child process -------------------------------------------------------------


class RemoteServer(str):
    """A ScriptedServer in a child process: the base_url, its PID, stats over HTTP, SIGKILL."""

    def __new__(cls, url: str, proc: subprocess.Popen):
        self = super().__new__(cls, url)
        self.proc = proc
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> dict:
        return httpx.get(f"{self}/_stats", timeout=10).json()

    def kill(self) -> None:
        """kill -9, by its PID: connections are cut, later ones refused."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def serve_subprocess(handler: str, *, port: int | None = None, capacity: int | None = None,
                     **params) -> Iterator[RemoteServer]:
    """`HANDLERS[handler](**params)` served (inline) by a child process on loopback."""
    port = port or free_port()
    args = [sys.executable, __file__, handler, str(port), json.dumps(params), str(capacity or 0)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    server = RemoteServer(f"http://{LOOPBACK}:{port}/v1", proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"scripted server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                server.stats()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        server.kill()


def _serve_main(argv: list[str]) -> None:
    name, port, params, capacity = argv
    handler = HANDLERS[name](**json.loads(params))
    server = ScriptedServer(handler, int(port), capacity=int(capacity) or None, inline=True)
    server.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def elasticsearch_url() -> str | None:
    """STEPER_ES_URL when it names a reachable Elasticsearch server (tests that need one skip otherwise)."""
    url = os.environ.get("STEPER_ES_URL")
    if not url:
        return None
    import httpx

    try:
        httpx.get(url, timeout=3)
        return url
    except httpx.HTTPError:
        return None


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    _serve_main(sys.argv[1:])


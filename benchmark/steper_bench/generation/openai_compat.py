"""Any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, `transformers serve`, ...), or a list of
replicas of one, through the shared transport (generation/transport.py).

`generate(requests)` is synchronous for the caller: requests run on a private event loop in a
background thread (so it also works when the caller is itself inside an event loop), at most
`cfg.concurrency` in flight per endpoint. Retries, backoff, Retry-After, routing and endpoint
health are the transport's, and counted. An empty completion is retried like a malformed
answer. 401 / 403 / 404 stop the run with a GeneratorError naming the endpoint and model (never
the key). A request that still fails after its retries comes back as StepResult(error=...) and
is recorded in the cache's failure table. Cache keys name the first URL of the list, not the
replica that answered, so any replica's answer serves every later run.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from dataclasses import dataclass
from typing import Any

from steper_bench.cache import CacheWriter, RequestCache
from steper_bench.generation import GeneratorError
from steper_bench.generation.base import StepRequest, StepResult
from steper_bench.generation.transport import (
    Call,
    Fatal,
    Malformed,
    Transport,
    TransportSettings,
    chat_text,
    completion_text,
    public_url,
)
from steper_bench.recipe import GeneratorConfig, endpoint_urls, expand_env
from steper_bench.records import GeneratorIdentity

OPENAI_URL = "https://api.openai.com/v1"

__all__ = ["BatchGenerator", "OpenAIGenerator", "check_endpoint", "make", "public_url", "resolve_endpoints"]


def resolve_endpoints(base_url: str | list[str] | None, api_key: str | None, *, what: str) -> tuple[list[str], str]:
    """(expanded URLs, key) of a generator or judge; OpenAI's URL when none is given. A local
    server gets the key "EMPTY" when none is set (they ignore it); OpenAI itself needs one."""
    urls = [expand_env(u, what=f"{what} base_url") for u in endpoint_urls(base_url)] or [OPENAI_URL]
    key = expand_env(api_key, what=f"{what} api_key") if api_key else None
    if not key:
        if base_url is None:
            raise GeneratorError(f"{what}: the OpenAI API needs a key: set api_key: ${{env:OPENAI_API_KEY}}")
        key = "EMPTY"
    return urls, key


def check_endpoint(base_url: str | list[str] | None, api_key: str | None, *, field: str, model: str = "") -> list[str]:
    """Fail in seconds, before any work, when no endpoint answers (GET /models) or one rejects the
    key; the message names the field and the public URL. Returns notes on replicas that are down
    while others answer (the transport takes those out and probes them back)."""
    import httpx

    urls = [expand_env(u, what=field) for u in endpoint_urls(base_url)] or [OPENAI_URL]
    key = expand_env(api_key, what=field.rsplit(".", 1)[0] + ".api_key") if api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    down = []
    for url in urls:
        base = url.rstrip("/")
        try:
            r = httpx.get(f"{base}/models", headers=headers, timeout=5.0)
        except httpx.HTTPError as e:
            down.append((public_url(base), type(e).__name__))
            continue
        if r.status_code in (401, 403):
            raise GeneratorError(f"the endpoint {public_url(base)} ({field}) rejected the API key (HTTP {r.status_code})")
    if len(down) == len(urls):
        where = ", ".join(u for u, _ in down)
        raise GeneratorError(
            f"cannot reach the endpoint {where} ({field}{', model ' + repr(model) if model else ''}; "
            f"{down[0][1]}): start the server (e.g. vLLM) or fix the URL"
        )
    return [f"{field}: {u} does not answer ({why}); the build starts on the other replicas" for u, why in down]


def settings_of(cfg: Any, **extra) -> TransportSettings:
    """Transport settings from a GeneratorConfig or JudgeConfig-like object."""
    return TransportSettings(concurrency=cfg.concurrency, max_concurrency=cfg.max_concurrency,
                             timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, **extra)


def _nonempty(parse):
    def checked(body: Any) -> tuple[str, int]:
        text, tokens = parse(body)
        if not text.strip():
            raise Malformed("empty completion")
        return text, tokens

    return checked


class OpenAIGenerator:
    def __init__(
        self,
        cfg: GeneratorConfig,
        cache: RequestCache | None = None,
        *,
        max_new_tokens: int = 64,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        self.cfg, self.cache, self.max_new_tokens = cfg, cache, max_new_tokens
        urls, key = resolve_endpoints(cfg.base_url, cfg.api_key, what=f"generator {cfg.model!r}")
        self.base_url = public_url(urls[0])
        self.identity = GeneratorIdentity(backend="openai", model=cfg.model, base_url=self.base_url,
                                          revision=cfg.revision or "")
        self._counts = {"requests": 0, "errors": 0, "cache_hits": 0}
        self._keyers: dict[tuple, Any] = {}  # stop list -> cache key function
        settings = settings_of(cfg, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s)
        self.transport = Transport(urls, key, settings)
        self._chat = cfg.api in ("chat", "batch")  # the Batch interface carries chat completions
        self._path, parse = ("/chat/completions", chat_text) if self._chat else ("/completions", completion_text)
        self._parse = _nonempty(parse)
        self._writer = CacheWriter(cache) if cache is not None else None  # off the event loop
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # (tag, StepResult | exception), as they finish
        self._ready: list = []
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-generator", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> dict[str, int]:
        t = self.transport.stats
        return {"requests": self._counts["requests"], "calls": t["calls"], "retries": t["retries"],
                "errors": self._counts["errors"], "cache_hits": self._counts["cache_hits"]}

    def endpoints(self) -> list[dict]:
        """Per-endpoint counters (calls, ok, failed, taken out, current limit, in service)."""
        return self.transport.endpoint_counters()

    # -- public -----------------------------------------------------------------------------
    streaming = True  # the loop may send each question's next step as soon as its last one is back

    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        self.submit(requests, list(range(len(requests))))
        results: list[StepResult | None] = [None] * len(requests)
        for _ in range(len(requests)):
            if not self._ready:
                self._ready = self.completed()
            i, res = self._ready.pop()
            results[i] = res
        if self._writer is not None:
            self._writer.flush()  # the batch's answers are on disk before the caller goes on
        return results  # type: ignore[return-value]

    def submit(self, requests: list[StepRequest], tags: list) -> None:
        """Start `requests`; each result comes back from `completed()` with its tag. Cache hits
        are ready at once; the rest run on the event loop, at most `concurrency` per endpoint."""
        self._counts["requests"] += len(requests)
        todo = []
        keys = [self._cache_key(r) for r in requests] if self.cache is not None else [""] * len(requests)
        hits = self.cache.get_many(keys) if self.cache is not None else [None] * len(requests)
        for r, tag, key, hit in zip(requests, tags, keys, hits):
            if hit is not None:
                self._counts["cache_hits"] += 1
                self._done.put((tag, StepResult(text=hit["text"], tokens=hit.get("tokens", 0), cached=True)))
            else:
                todo.append((tag, r, key))
        if todo:
            self._loop.call_soon_threadsafe(self._start, todo)

    def completed(self) -> list[tuple[Any, StepResult]]:
        """(tag, result) of every request finished since the last call; waits for at least one."""
        items = [self._done.get()]
        while True:
            try:
                items.append(self._done.get_nowait())
            except queue.Empty:
                break
        for _, res in items:
            if isinstance(res, BaseException):
                raise res
        return items

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._submit(self._cancel_all())
        if self._writer is not None:
            self._writer.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _params(self, stop: list[str]) -> dict:
        """Decoding parameters of one request; the stop sequences come from the framework."""
        c = self.cfg
        return {"temperature": c.temperature, "top_p": c.top_p, "seed": c.seed,
                "max_tokens": self.max_new_tokens, "stop": list(stop)}

    def _cache_key(self, r: StepRequest) -> str:
        """RequestCache.key of the request's parts; everything but the prompt and sample index is
        fixed per stop list, so it is checked and laid out once (`RequestCache.keyer`)."""
        stop = tuple(r.stop)
        keyer = self._keyers.get(stop)
        if keyer is None:
            keyer = self._keyers[stop] = RequestCache.keyer(
                backend="openai", base_url=self.base_url, model=self.cfg.model, revision=self.cfg.revision or "",
                api="chat" if self._chat else "completions", params=self._params(r.stop),
            )
        return keyer(prompt=r.prompt, sample_index=r.sample_index)

    def _body(self, r: StepRequest) -> dict:
        if self._chat:
            return {"model": self.cfg.model, "messages": [{"role": "user", "content": r.prompt}], **self._params(r.stop)}
        return {"model": self.cfg.model, "prompt": r.prompt, **self._params(r.stop)}

    def _start(self, todo: list) -> None:  # on the event loop
        for tag, r, key in todo:
            task = self._loop.create_task(self._one_saved(r, key))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, tag))

    def _finished(self, tag, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            self._done.put((tag, task.exception()))
            return
        call = task.result()
        text, tokens = call.value or ("", 0)
        self._counts["errors"] += bool(call.error)
        self._done.put((tag, StepResult(text=text, latency_s=call.latency_s, tokens=tokens, error=call.error,
                                        extra={"endpoint": call.endpoint})))

    async def _cancel_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.close()

    async def _one_saved(self, r: StepRequest, key: str) -> Call:
        try:
            call = await self.transport.post(self._path, self._body(r), self._parse)
        except Fatal as e:
            raise GeneratorError(f"{e.status} from {e.endpoint} for model {self.cfg.model!r}: {e.message} "
                                 "(check base_url, model and api_key)") from None
        # Saved as each answer arrives (milliseconds later), not after the batch: a kill mid-step
        # loses no paid call.
        if self._writer is not None:
            if call.error:
                self._writer.fail(key, call.error)
            else:
                self._writer.put(key, {"text": call.value[0], "tokens": call.value[1]})
        return call


class BatchGenerator(OpenAIGenerator):
    """`api: batch`: each generate() call is one OpenAI Batch (generation/batch.py) of chat
    completions on the first endpoint; the cache keys are those of `api: chat`, so answers move
    freely between the two."""

    streaming = False

    def __init__(self, cfg: GeneratorConfig, cache: RequestCache | None = None, **kw):
        super().__init__(cfg, cache, **kw)
        from steper_bench.generation.batch import BatchClient

        self.transport.endpoints = self.transport.endpoints[:1]  # a batch lives on the server it was sent to
        self.batches = BatchClient(self.transport, cache, self._parse, poll_s=cfg.batch_poll_s)

    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        from steper_bench.generation.batch import BatchError

        self._counts["requests"] += len(requests)
        keys = [self._cache_key(r) for r in requests]
        results: dict[str, StepResult] = {}
        for k in keys:
            hit = self.cache.get(k) if self.cache is not None and k not in results else None
            if hit is not None:
                results[k] = StepResult(text=hit["text"], tokens=hit.get("tokens", 0), cached=True)
        items = list({k: (k, self._body(r)) for k, r in zip(keys, requests) if k not in results}.values())
        try:
            answers = self._submit(self.batches.run(items)) if items else {}
        except BatchError as e:
            answers = {k: _Failed(str(e)) for k, _ in items}
        except Fatal as e:
            raise GeneratorError(f"{e.status} from {e.endpoint} for model {self.cfg.model!r}: {e.message} "
                                 "(check base_url, model and api_key)") from None
        for k, a in answers.items():
            text, tokens = a.value or ("", 0)
            results[k] = StepResult(text=text, tokens=tokens, error=a.error)
            if self.cache is not None:
                if a.error:
                    self.cache.record_failure(k, a.error)
                else:
                    self.cache.put(k, {"text": text, "tokens": tokens})
        out = [results[k] for k in keys]
        self._counts["cache_hits"] += sum(r.cached for r in out)
        self._counts["errors"] += sum(bool(r.error) for r in out)
        return out


@dataclass
class _Failed:
    error: str
    value: Any = None


def make(cfg: GeneratorConfig, cache: RequestCache | None, *, max_new_tokens: int) -> OpenAIGenerator:
    kind = BatchGenerator if cfg.api == "batch" else OpenAIGenerator
    return kind(cfg, cache, max_new_tokens=max_new_tokens)

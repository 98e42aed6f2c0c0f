"""Any OpenAI-compatible endpoint (OpenAI, vLLM, `transformers serve`, ...) via `AsyncOpenAI`.

`generate(requests)` is synchronous for the caller: requests run on a private event loop in a
background thread (so it also works when the caller is itself inside an event loop), at most
`cfg.concurrency` at a time. Retries are ours, not the client's (max_retries=0), so they are
visible and counted: exponential backoff with jitter on 429 / 5xx / timeouts / connection
errors / malformed or empty answers, honouring Retry-After. 401 / 403 / 404 stop the run with a
GeneratorError naming the endpoint and model (never the key). A request that still fails after
its retries comes back as StepResult(error=...) and is recorded in the cache's failure table.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import openai

from steper_bench.cache import RequestCache
from steper_bench.generation import GeneratorError
from steper_bench.generation.base import StepRequest, StepResult
from steper_bench.recipe import GeneratorConfig, expand_env
from steper_bench.records import GeneratorIdentity

OPENAI_URL = "https://api.openai.com/v1"
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
RETRYABLE_STATUS = {408, 409, 429}


def public_url(url: str) -> str:
    """The URL without user:password@ or query string (where keys sometimes travel)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def check_endpoint(base_url: str | None, api_key: str | None, *, field: str, model: str = "") -> None:
    """Fail in seconds, before any work, when an OpenAI-compatible endpoint does not answer
    (GET /models) or rejects the key; the message names the field and the public URL."""
    import httpx

    from steper_bench.generation import GeneratorError

    base = (expand_env(base_url, what=field) or OPENAI_URL).rstrip("/")
    key = expand_env(api_key, what=field.rsplit(".", 1)[0] + ".api_key") if api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.get(f"{base}/models", headers=headers, timeout=5.0)
    except httpx.HTTPError as e:
        raise GeneratorError(
            f"cannot reach the endpoint {public_url(base)} ({field}{', model ' + repr(model) if model else ''}; "
            f"{type(e).__name__}): start the server (e.g. vLLM) or fix the URL"
        ) from None
    if r.status_code in (401, 403):
        raise GeneratorError(f"the endpoint {public_url(base)} ({field}) rejected the API key (HTTP {r.status_code})")


@dataclass
class _Outcome:
    text: str = ""
    tokens: int = 0
    error: str = ""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


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
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        what = f"generator {cfg.model!r}"
        url = expand_env(cfg.base_url, what=f"{what} base_url") or OPENAI_URL
        key = expand_env(cfg.api_key, what=f"{what} api_key")
        if not key:
            if cfg.base_url is None:
                raise GeneratorError(f"{what}: the OpenAI API needs a key: set api_key: ${{env:OPENAI_API_KEY}}")
            key = "EMPTY"  # local servers (vLLM, transformers serve) ignore it; never send ours there
        self._key = key
        self.base_url = public_url(url)
        self.identity = GeneratorIdentity(backend="openai", model=cfg.model, base_url=self.base_url,
                                          revision=cfg.revision or "")
        self.stats = {"requests": 0, "calls": 0, "retries": 0, "errors": 0, "cache_hits": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-generator", daemon=True)
        self._thread.start()
        self._client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=cfg.timeout_s)
        self._sem = self._submit(self._make_semaphore())

    async def _make_semaphore(self) -> asyncio.Semaphore:
        return asyncio.Semaphore(self.cfg.concurrency)

    def _submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- public -----------------------------------------------------------------------------
    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        self.stats["requests"] += len(requests)
        keys = [self._cache_key(r) for r in requests]
        results: list[StepResult | None] = [None] * len(requests)
        todo = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = StepResult(text=hit["text"], tokens=hit.get("tokens", 0), cached=True)
                self.stats["cache_hits"] += 1
            else:
                todo.append(i)
        timed = self._submit(self._run([requests[i] for i in todo], [keys[i] for i in todo])) if todo else []
        for i, (outcome, latency) in zip(todo, timed):
            results[i] = StepResult(text=outcome.text, latency_s=latency, tokens=outcome.tokens, error=outcome.error)
            self.stats["errors"] += bool(outcome.error)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._submit(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _params(self, stop: list[str]) -> dict:
        """Decoding parameters of one request; the stop sequences come from the framework."""
        c = self.cfg
        return {"temperature": c.temperature, "top_p": c.top_p, "seed": c.seed,
                "max_tokens": self.max_new_tokens, "stop": list(stop)}

    def _cache_key(self, r: StepRequest) -> str:
        return RequestCache.key(
            backend="openai", base_url=self.base_url, model=self.cfg.model, revision=self.cfg.revision or "",
            api=self.cfg.api, prompt=r.prompt, params=self._params(r.stop), sample_index=r.sample_index,
        )

    async def _run(self, requests: list[StepRequest], keys: list[str]) -> list[tuple[_Outcome, float]]:
        tasks = [asyncio.ensure_future(self._one_saved(r, k)) for r, k in zip(requests, keys)]
        try:
            return await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _one_saved(self, r: StepRequest, key: str) -> tuple[_Outcome, float]:
        outcome, latency = await self._one(r)
        # Saved as each answer arrives, not after the batch: a kill mid-step loses no paid call.
        if self.cache is not None:
            if outcome.error:
                self.cache.record_failure(key, outcome.error)
            else:
                self.cache.put(key, {"text": outcome.text, "tokens": outcome.tokens})
        return outcome, latency

    async def _one(self, r: StepRequest) -> tuple[_Outcome, float]:
        start = time.monotonic()
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
            try:
                async with self._sem:
                    self.stats["calls"] += 1
                    text, tokens = await self._call(r.prompt, r.stop)
                if not text.strip():
                    raise _Retry("empty completion")
                return _Outcome(text, tokens), time.monotonic() - start
            except _Retry as e:
                last, retry_after = str(e), e.retry_after
            except FATAL as e:
                raise GeneratorError(
                    f"{e.status_code} from {self.base_url} for model {self.cfg.model!r}: "
                    f"{self._scrub(_message(e))} (check base_url, model and api_key)"
                ) from None
            except openai.APIStatusError as e:
                last = f"HTTP {e.status_code}: {self._scrub(_message(e))}"
                if e.status_code < 500 and e.status_code not in RETRYABLE_STATUS:
                    break  # e.g. 400 prompt too long: retrying cannot help
                retry_after = _retry_after(e.response)
            except openai.APITimeoutError:
                last, retry_after = f"timeout after {self.cfg.timeout_s}s", None
            except openai.APIConnectionError as e:
                last, retry_after = f"connection error: {self._scrub(str(e.__cause__ or e))}", None
            except (openai.APIResponseValidationError, ValueError) as e:
                last, retry_after = f"malformed response: {self._scrub(str(e))[:200]}", None
            if attempt < self.cfg.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        tries = self.cfg.max_retries + 1
        return _Outcome(error=f"{last} (after {tries} attempt{'s' * (tries > 1)})"), time.monotonic() - start

    async def _call(self, prompt: str, stop: list[str]) -> tuple[str, int]:
        c = self.cfg
        if c.api == "chat":
            resp = await self._client.chat.completions.create(
                model=c.model, messages=[{"role": "user", "content": prompt}], **self._params(stop))
            text = resp.choices[0].message.content if resp.choices else None
        else:
            resp = await self._client.completions.create(model=c.model, prompt=prompt, **self._params(stop))
            text = resp.choices[0].text if resp.choices else None
        if text is None:
            raise _Retry("malformed response: no choices")
        tokens = resp.usage.completion_tokens if getattr(resp, "usage", None) else 0
        return text, tokens or 0

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max_s * 2)
        return min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key and self._key != "EMPTY" else text


def _message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    return str(body if body else e.message)[:300]


def _retry_after(response) -> float | None:
    """Seconds to wait from Retry-After-Ms / Retry-After (seconds or an HTTP date)."""
    headers = getattr(response, "headers", None) or {}
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


def make(cfg: GeneratorConfig, cache: RequestCache | None, *, max_new_tokens: int) -> OpenAIGenerator:
    return OpenAIGenerator(cfg, cache, max_new_tokens=max_new_tokens)

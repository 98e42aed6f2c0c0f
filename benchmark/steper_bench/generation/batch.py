"""OpenAI's Batch interface (`api: batch`) for teacher and judge: half the price of live calls,
answers within the completion window (24 h) instead of seconds.

Per batch of requests (a loop step for the teacher, a round for the judge): the requests are
written as the Batch JSONL (one `{"custom_id", "method", "url", "body"}` line each; custom_id is
the request's cache key), uploaded (POST /files, purpose batch), submitted (POST /batches), polled
(GET /batches/{id}, every `poll_s`) and, once the batch is completed, failed, expired or
cancelled, its output and error files downloaded (GET /files/{id}/content). Every HTTP call goes
through the shared transport (its counted retries). The batch id is stored in the request cache
against each request the moment the batch exists, so a run killed while it waits collects that
batch on the next run instead of submitting (and paying for) it again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steper_bench.cache import RequestCache
from steper_bench.generation.transport import Call, Fatal, Malformed, Transport

CHAT = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Answer:
    value: Any = None
    error: str = ""


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for name, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class BatchClient:
    def __init__(
        self,
        transport: Transport,
        cache: RequestCache | None,
        parse: Callable[[Any], Any],
        *,
        poll_s: float = 30.0,
        endpoint: str = CHAT,
    ):
        self.t, self.cache, self.parse, self.poll_s, self.endpoint = transport, cache, parse, poll_s, endpoint
        self.submitted: list[str] = []  # batch ids this client created (tests, logs)

    async def run(self, items: list[tuple[str, dict]]) -> dict[str, Answer]:
        """custom_id -> Answer for (custom_id, body) items: batches stored for them are collected
        first, the rest go out as one new batch."""
        out: dict[str, Answer] = {}
        for batch_id, ids in self._stored([k for k, _ in items]).items():
            out.update(await self._collect(batch_id, ids, resumed=True))
        rest = [(k, b) for k, b in items if k not in out]
        if rest:
            ids = [k for k, _ in rest]
            batch_id = await self._submit(rest)
            if self.cache is not None:
                self.cache.record_batch(ids, batch_id)
            out.update(await self._collect(batch_id, ids, resumed=False))
        return out

    def _stored(self, ids: list[str]) -> dict[str, list[str]]:
        by_batch: dict[str, list[str]] = {}
        for k in ids if self.cache is not None else []:
            batch_id = self.cache.batch_of(k)
            if batch_id:
                by_batch.setdefault(batch_id, []).append(k)
        return by_batch

    async def _submit(self, items: list[tuple[str, dict]]) -> str:
        lines = "".join(
            json.dumps({"custom_id": k, "method": "POST", "url": self.endpoint, "body": b}) + "\n" for k, b in items
        )
        data, ctype = multipart({"purpose": "batch"}, {"file": ("steper-requests.jsonl", lines.encode())})
        file_id = _ok(await self.t.request("POST", "/files", data, _id, content_type=ctype), "upload the requests")
        body = {
            "input_file_id": file_id,
            "endpoint": self.endpoint,
            "completion_window": "24h",
            "metadata": {"source": "steper-bench"},
        }
        batch_id = _ok(await self.t.post("/batches", body, _id), "create the batch")
        self.submitted.append(batch_id)
        return batch_id

    async def _collect(self, batch_id: str, ids: list[str], *, resumed: bool) -> dict[str, Answer]:
        """Wait for a batch and read its answers for `ids`; a stored batch the server no longer
        knows (404) answers nothing, so its requests are sent again."""
        while True:
            try:
                batch = _ok(await self.t.request("GET", f"/batches/{batch_id}", None, _batch), f"poll batch {batch_id}")
            except Fatal as e:
                if not (resumed and e.status == 404):
                    raise
                self._forget(ids)
                return {}
            if batch["status"] in TERMINAL:
                break
            await asyncio.sleep(self.poll_s)
        found: dict[str, Answer] = {}
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                found.update(await self._answers(batch[key]))
        why = _batch_error(batch)
        out = {k: found.get(k) or Answer(error=f"batch {batch_id} {why}") for k in ids}
        self._forget(ids)
        return out

    async def _answers(self, file_id: str) -> dict[str, Answer]:
        text = _ok(await self.t.request("GET", f"/files/{file_id}/content", None, bytes, raw=True), "download results")
        out = {}
        for line in text.decode("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["custom_id"]] = self._answer(row)
        return out

    def _answer(self, row: dict) -> Answer:
        resp, err = row.get("response") or {}, row.get("error")
        if err:
            return Answer(error=f"batch request failed: {err.get('code', '')} {err.get('message', '')}".strip())
        if resp.get("status_code") != 200:
            return Answer(error=f"HTTP {resp.get('status_code')} in the batch: {json.dumps(resp.get('body'))[:300]}")
        try:
            return Answer(self.parse(resp["body"]))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            why = str(e) if isinstance(e, Malformed) else f"unexpected JSON shape ({type(e).__name__}: {e})"
            return Answer(error=f"malformed response in the batch: {why}")

    def _forget(self, ids: list[str]) -> None:
        if self.cache is not None:
            self.cache.forget_batch(ids)


class BatchError(RuntimeError):
    """An upload, submission or poll failed after its retries."""


def _ok(call: Call, what: str) -> Any:
    if call.error:
        raise BatchError(f"cannot {what}: {call.error}")
    return call.value


def _id(body: dict) -> str:
    if not isinstance(body.get("id"), str):
        raise Malformed("no id in the answer")
    return body["id"]


def _batch(body: dict) -> dict:
    if not isinstance(body.get("status"), str):
        raise Malformed("no status in the batch object")
    return body


def _batch_error(batch: dict) -> str:
    status = batch["status"]
    errors = (batch.get("errors") or {}).get("data") or []
    if errors:
        return f"{status}: " + "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors[:3])
    return f"{status} without an answer to this request"

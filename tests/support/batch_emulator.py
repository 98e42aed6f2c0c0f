"""A local emulator of OpenAI's Files and Batches endpoints, over real HTTP (the scripted server),
for tests of `api: batch`.

    with batch_emulator(answer, delay_s=0.3) as (url, state):   # url ends in /v1
        ...  # state.batches: id -> batch object; state.files: id -> bytes; state.lines_answered

Endpoints: POST /v1/files (multipart/form-data: file + purpose), GET /v1/files/{id},
GET /v1/files/{id}/content, POST /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel,
GET /v1/models. A batch is validated as OpenAI does (JSONL lines with a unique custom_id, method
POST, the batch's url), then after `delay_s` each line is answered by `answer(Req) -> Reply`
(any scripted-server handler: `Reply.text(req, ...)`) and written to an output file (status 200)
or an error file (any other status); statuses go validating -> in_progress -> finalizing ->
completed, with request_counts. Unknown ids are 404s in OpenAI's error shape.
"""

from __future__ import annotations

import contextlib
import email.parser
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from support.servers import Handler, Reply, Req, scripted_server


@dataclass
class BatchState:
    files: dict[str, dict] = field(default_factory=dict)  # id -> file object + "data"
    batches: dict[str, dict] = field(default_factory=dict)
    lines_answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids):06d}"


def _not_found(what: str) -> Reply:
    return Reply(
        status=404, json={"error": {"message": f"No such {what}", "type": "invalid_request_error", "code": "not_found"}}
    )


def _form(req: Req) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body."""
    head = f"Content-Type: {req.headers.get('content-type', '')}\r\n\r\n".encode()
    msg = email.parser.BytesParser().parsebytes(head + req.raw)
    return (
        {
            part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in msg.get_payload()
        }
        if msg.is_multipart()
        else {}
    )


class BatchEmulator:
    def __init__(self, answer: Handler, delay_s: float):
        self.answer, self.delay_s, self.state = answer, delay_s, BatchState()

    def __call__(self, req: Req) -> Reply:
        path = req.path.split("?")[0].rstrip("/")
        for pattern, method, handler in self.routes:
            m = re.fullmatch(pattern, path)
            if m and req.method == method:
                return handler(self, req, *m.groups())
        return _not_found(f"route {req.method} {path}")

    def _models(self, req):
        return Reply(json={"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    def _upload(self, req):
        form = _form(req)
        if "file" not in form or form.get("purpose", (None, b""))[1] != b"batch":
            return Reply(status=400, json={"error": {"message": "file and purpose=batch are required"}})
        filename, data = form["file"]
        return Reply(json=self._file(data, filename or "upload.jsonl", "batch"))

    def _file(self, data: bytes, filename: str, purpose: str) -> dict:
        with self.state.lock:
            fid = self.state.new_id("file")
            obj = {
                "id": fid,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
            }
            self.state.files[fid] = {**obj, "data": data}
        return obj

    def _file_info(self, req, fid):
        f = self.state.files.get(fid)
        return Reply(json={k: v for k, v in f.items() if k != "data"}) if f else _not_found("file")

    def _content(self, req, fid):
        f = self.state.files.get(fid)
        return Reply(raw=f["data"]) if f else _not_found("file")

    def _create(self, req):
        body = req.body or {}
        if body.get("input_file_id") not in self.state.files:
            return _not_found("input file")
        with self.state.lock:
            bid = self.state.new_id("batch")
            batch = {
                "id": bid,
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body.get("completion_window"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }
            self.state.batches[bid] = batch
        threading.Thread(target=self._process, args=(bid,), daemon=True).start()
        return Reply(json=dict(batch))

    def _get(self, req, bid):
        with self.state.lock:
            batch = self.state.batches.get(bid)
            return Reply(json=dict(batch)) if batch else _not_found("batch")

    def _cancel(self, req, bid):
        with self.state.lock:
            batch = self.state.batches.get(bid)
            if batch and batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                batch["status"] = "cancelled"
            return Reply(json=dict(batch)) if batch else _not_found("batch")

    def _process(self, bid: str) -> None:
        batch = self.state.batches[bid]
        lines = [json.loads(x) for x in self.state.files[batch["input_file_id"]]["data"].decode().splitlines() if x]
        problems = self._validate(lines, batch["endpoint"])
        with self.state.lock:
            if problems:
                batch.update(status="failed", errors={"object": "list", "data": problems})
                return
            batch.update(status="in_progress", request_counts={"total": len(lines), "completed": 0, "failed": 0})
        time.sleep(self.delay_s)
        out, err = [], []
        for i, line in enumerate(lines):
            reply = self.answer(Req(i, "POST", line["url"], {}, line["body"], time.monotonic()))
            row = {
                "id": f"batch_req_{bid}_{i}",
                "custom_id": line["custom_id"],
                "response": {"status_code": reply.status, "request_id": f"req_{i}", "body": reply.json},
                "error": None,
            }
            (out if reply.status == 200 else err).append(json.dumps(row) + "\n")
            with self.state.lock:
                self.state.lines_answered += 1
                batch["request_counts"]["completed" if reply.status == 200 else "failed"] += 1
        with self.state.lock:
            if batch["status"] == "cancelled":
                return
            batch["status"] = "finalizing"
        output = self._file("".join(out).encode(), f"{bid}_output.jsonl", "batch_output") if out else None
        errors = self._file("".join(err).encode(), f"{bid}_errors.jsonl", "batch_output") if err else None
        with self.state.lock:
            batch.update(
                status="completed",
                output_file_id=output and output["id"],
                error_file_id=errors and errors["id"],
                completed_at=int(time.time()),
            )

    @staticmethod
    def _validate(lines: list[dict], endpoint: str) -> list[dict]:
        seen, problems = set(), []
        for n, line in enumerate(lines, 1):
            if line.get("method") != "POST" or line.get("url") != endpoint or "custom_id" not in line:
                problems.append(
                    {
                        "code": "invalid_request",
                        "message": f"each line needs custom_id, method POST and url {endpoint}",
                        "line": n,
                    }
                )
            elif line["custom_id"] in seen:
                problems.append({"code": "duplicate_custom_id", "message": "custom_id must be unique", "line": n})
            seen.add(line.get("custom_id"))
        return problems

    routes: ClassVar = [
        (r"/v1/models", "GET", _models),
        (r"/v1/files", "POST", _upload),
        (r"/v1/files/([\w-]+)", "GET", _file_info),
        (r"/v1/files/([\w-]+)/content", "GET", _content),
        (r"/v1/batches", "POST", _create),
        (r"/v1/batches/([\w-]+)", "GET", _get),
        (r"/v1/batches/([\w-]+)/cancel", "POST", _cancel),
    ]


@contextlib.contextmanager
def batch_emulator(
    answer: Handler, *, delay_s: float = 0.2, port: int | None = None
) -> Iterator[tuple[str, BatchState]]:
    emulator = BatchEmulator(answer, delay_s)
    with scripted_server(emulator, port) as server:
        yield server, emulator.state

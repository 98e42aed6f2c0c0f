"""Where a stage's time goes: seconds per named phase, and wrappers that time (and count) the
retriever and generator calls the multi-step loop makes. Shared by build and eval.

    clock = PhaseClock()
    with clock("load"):
        ...
    run_loop(qs, Timed(retriever, clock, "retrieval"), Timed(generator, clock, "generation", counts), ...)
    clock.t  # {"load": 0.2, "retrieval": 1.3, "generation": 8.1}
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class PhaseClock:
    """Seconds per phase, summed over every `with clock(phase):` block."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[phase] += time.perf_counter() - t0


@dataclass
class Timed:
    """Wraps a generator or retriever: its calls count as `phase` on the clock. With `counts`
    (any object with `requests`, `cache_hits` and `errors` attributes), generator results are
    counted too: requests not answered from the cache, cache hits, failed requests."""

    inner: Any
    clock: PhaseClock
    phase: str
    counts: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, requests):
        with self.clock(self.phase):
            results = self.inner.generate(requests)
        self._count(results)
        return results

    # A streaming generator (see reasoning/loop.py): the time spent sending and waiting counts.
    def submit(self, requests, tags):
        with self.clock(self.phase):
            self.inner.submit(requests, tags)

    def completed(self):
        with self.clock(self.phase):
            done = self.inner.completed()
        self._count([r for _, r in done])
        return done

    def _count(self, results) -> None:
        if self.counts is not None:
            for r in results:
                self.counts.cache_hits += bool(r.cached)
                self.counts.requests += not r.cached
                self.counts.errors += bool(r.error)

    def retrieve(self, queries, k, question_ids=None):
        with self.clock(self.phase):
            return self.inner.retrieve(queries, k, question_ids)

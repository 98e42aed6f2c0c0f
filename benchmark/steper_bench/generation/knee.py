"""`concurrency: auto`: find one endpoint's knee, the concurrency past which more requests in
flight only wait in the server's queue.

Below the knee a request takes the server's own time (the lowest latency seen, `base`) and more
concurrency is more throughput; past it, throughput is flat and latency rises with every extra
request (Little's law). Per window of answers (at least 2 x the limit, and 16):
- a 429 or a timeout cuts the limit to DECREASE x (multiplicative decrease), and the limit it
  happened at becomes a ceiling that is tried again only every PROBE_EVERY windows;
- latency above QUEUE x base (a queue is building) scales the limit back to where it was not;
- otherwise, if the limit was reached, it grows: doubling while latency stays near base (slow
  start), then one eighth at a time (additive increase), so a server that gets faster is followed.
A queue of up to QUEUE - 1 requests per server slot is kept on purpose: it covers the round trip
between an answer and the next request, so the server's slots never idle. After each change the
answers to requests sent before it are skipped (they say nothing of the new limit); windows in
which the limit was never reached (the caller had nothing more to send) change nothing. Bounded
by `maximum`.
"""

from __future__ import annotations

import math
import time

QUEUE = 1.5  # latency allowed over base before backing off
SLOW_START = 1.15  # slow start goes on while latency stays within this of base
DECREASE = 0.7
BASE_DRIFT = 1.02  # base creeps up each window, so a server that slows down is followed
PROBE_EVERY = 4


class Knee:
    def __init__(self, maximum: int, start: int = 4):
        self.max = max(1, int(maximum))
        self.limit = min(start, self.max)
        self.base = math.inf
        self.growing = True
        self.skip = 0
        self.ceiling, self.waited = 0, 0  # the limit of the last 429 / timeout, windows spent below it
        self.history: list[tuple[int, float, float]] = []  # (limit, throughput, latency) per window
        self._window()

    def _window(self) -> None:
        self.t0, self.n, self.latency, self.peak = time.monotonic(), 0, 0.0, 0

    def sent(self, outstanding: int) -> None:
        self.peak = max(self.peak, outstanding)

    def done(self, latency_s: float, failed: bool) -> bool:
        """Count one finished request; True when the limit just went up (wake waiting senders)."""
        if self.skip:
            self.skip -= 1
            if not self.skip:
                self._window()
            return False
        self.n += 1
        self.latency += latency_s
        if not failed and self.n < max(2 * self.limit, 16):
            return False
        old, latency = self.limit, self.latency / self.n
        self.history.append((old, self.n / max(time.monotonic() - self.t0, 1e-6), latency))
        if failed:
            self.ceiling, self.waited = old, 0
            self.limit, self.growing = max(1, math.floor(self.limit * DECREASE)), False
        else:
            self._decide(latency)
        self.skip = old if self.limit != old else 0
        self._window()
        return self.limit > old

    def _decide(self, latency: float) -> None:
        self.base = min(self.base * BASE_DRIFT, latency)
        if latency > QUEUE * self.base:  # a queue: back to the concurrency that had none
            self.limit, self.growing = max(1, math.floor(self.limit * QUEUE * self.base / latency)), False
        elif self.peak >= self.limit:
            if self.ceiling and self.limit >= self.ceiling:
                self.ceiling = 0  # a whole window at the old ceiling without a failure
            self.growing = self.growing and latency <= SLOW_START * self.base
            step = self.limit if self.growing else max(1, self.limit // 8)
            if self.ceiling and self.limit + step >= self.ceiling:
                self.waited += 1
                if self.waited < PROBE_EVERY:
                    return
                self.waited = 0
            self.limit = min(self.max, self.limit + step)

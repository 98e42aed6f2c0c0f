"""`concurrency: auto`: find one endpoint's knee, the concurrency past which throughput stops rising.

Per window of completions (at least 2 x the limit, and 16) the endpoint's throughput is measured:
- slow start: while throughput rises by more than GAIN, the limit grows by half;
- past the knee (a queueing server answers no faster, only later: latency rises at flat
  throughput) the limit goes back to the best one seen, then every PROBE_EVERY windows one step
  higher is tried again (additive increase), so a server that gets faster is followed;
- a 429 or a timeout in a window cuts the limit to DECREASE x (multiplicative decrease).
Windows in which the limit was never reached (the caller had nothing more to send) say nothing
about the server and are skipped. Bounded by `maximum`.
"""

from __future__ import annotations

import math
import time

GAIN = 1.05
DECREASE = 0.7
PROBE_EVERY = 4


class Knee:
    def __init__(self, maximum: int, start: int = 4):
        self.max = max(1, int(maximum))
        self.limit = min(start, self.max)
        self.best_limit, self.best_rate = self.limit, 0.0
        self.growing = True
        self.windows_at_best = 0
        self.history: list[tuple[int, float]] = []  # (limit, throughput) per decision: for tests and logs
        self._window()

    def _window(self) -> None:
        self.t0, self.n, self.failures, self.peak = time.monotonic(), 0, 0, 0

    def sent(self, outstanding: int) -> None:
        self.peak = max(self.peak, outstanding)

    def done(self, latency_s: float, failed: bool) -> bool:
        """Count one finished request; True when the limit just went up (wake waiting senders)."""
        self.n += 1
        self.failures += failed
        if self.n < max(2 * self.limit, 16) and not (failed and self.n >= 4):
            return False
        old, rate = self.limit, self.n / max(time.monotonic() - self.t0, 1e-6)
        if self.failures:
            self.limit = max(1, math.floor(self.limit * DECREASE))
            self.best_limit, self.best_rate, self.growing = self.limit, 0.0, False
        elif self.peak >= self.limit:
            self._decide(rate)
        self.history.append((old, rate))
        self._window()
        return self.limit > old

    def _decide(self, rate: float) -> None:
        if rate > self.best_rate * GAIN:
            self.best_limit, self.best_rate = self.limit, rate
            step = math.ceil(self.limit * 0.5) if self.growing else max(1, self.limit // 8)
            self.limit = min(self.max, self.limit + step)
            self.windows_at_best = 0
        elif self.limit != self.best_limit:  # no gain from the extra requests: back to the knee
            self.growing = False
            self.limit = self.best_limit
        else:  # at the knee: refresh its throughput, now and then try one step higher
            self.best_rate = rate
            self.windows_at_best += 1
            if self.windows_at_best >= PROBE_EVERY and self.limit < self.max:
                self.windows_at_best = 0
                self.limit += max(1, self.limit // 8)

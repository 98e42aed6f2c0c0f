"""The Generator protocol: one batch of step requests in, one result per request out.

The multi-step loop sends every active question's next step as one batch; a backend decides
how to run it (async HTTP with bounded concurrency, a padded batch on a local model, or no
model at all). Backends are listed by name in `steper_bench.registry.GENERATORS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from steper_bench.records import GeneratorIdentity, Paragraph, Question


@dataclass
class StepRequest:
    prompt: str  # the fully rendered prompt text
    question: Question  # for backends that need the gold (supporting-facts) and for logs
    context: list[Paragraph]  # paragraphs in the prompt, in order
    previous: list[str]  # reasoning sentences so far
    must_answer: bool = False  # forced aggregation step
    sample_index: int = 0  # part of the cache key: distinct samples of the same prompt
    # From the reasoning framework, so that backends know nothing of any framework:
    stop: list[str] = field(default_factory=lambda: ["\n"])  # stop sequences (not in the text)
    complete: Callable[[str], bool] | None = None  # a partial generation holds a whole step
    framework: Any = None  # the Framework (the supporting-facts teacher asks it to write a step)


@dataclass
class StepResult:
    text: str  # raw generated text (the loop cuts it to one sentence)
    latency_s: float = 0.0
    tokens: int = 0
    cached: bool = False
    error: str = ""  # non-empty: the request failed after its retries
    extra: dict = field(default_factory=dict)  # backend-specific facts, e.g. grounded


class Generator(Protocol):
    identity: GeneratorIdentity

    def generate(self, requests: list[StepRequest]) -> list[StepResult]: ...

    def close(self) -> None: ...


def cached_results(cache, keys: list[str], n: int, stats: dict) -> list[StepResult | None]:
    """For `n` requests, the answers the request cache already holds under `keys` (None where it
    holds none, and everywhere without a cache), counted in stats["cache_hits"]."""
    out: list[StepResult | None] = [None] * n
    if cache is None:
        return out
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None:
            out[i] = StepResult(text=hit["text"], tokens=hit["tokens"], cached=True)
            stats["cache_hits"] += 1
    return out

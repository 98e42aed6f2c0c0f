"""The supporting-facts silver teacher: no LLM, the dataset's gold annotation.

It asks the request's framework to write the next step from the gold (`Framework.silver_step`):
IRCoT states the next gold supporting sentence (preferring one whose paragraph is already in the
context; `extra["grounded"]` says whether it was), the last carrying "So the answer is: <gold>.";
Self-Ask writes follow-up questions and intermediate answers from the gold decomposition;
single-step writes the whole gold chain at once. A forced step (`must_answer`) states the answer.
Deterministic and instant: it drives the offline quickstart and the downstream tests (step-wise
data, training, publishing) without a model. It is a silver teacher, not a result: its chains
copy gold annotations.
"""

from __future__ import annotations

from steper_bench.generation.base import StepRequest, StepResult
from steper_bench.records import GeneratorIdentity

BACKEND = "supporting-facts"


class SupportingFactsGenerator:
    def __init__(self, model: str = BACKEND):
        self.identity = GeneratorIdentity(backend=BACKEND, model=model)
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0}

    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        self.stats["requests"] += len(requests)
        return [self._one(r) for r in requests]

    @staticmethod
    def _one(req: StepRequest) -> StepResult:
        if req.framework is None:
            raise ValueError("the supporting-facts teacher needs the request's framework (StepRequest.framework)")
        return req.framework.silver_step(req)

    def close(self) -> None:
        pass


def make(cfg=None, cache=None, max_new_tokens: int = 64) -> SupportingFactsGenerator:
    """Factory used by `make_generator`; `cache` and `max_new_tokens` do not apply here."""
    model = getattr(cfg, "model", None) or BACKEND
    return SupportingFactsGenerator(model)

"""The supporting-facts silver teacher: no LLM, the dataset's gold supporting sentences.

At each step it states the next gold supporting sentence not yet stated, preferring one whose
paragraph is already in the prompt's context (`extra["grounded"]` says whether it was); the last
one carries "So the answer is: <gold>.", so a 2-hop question ends in about 2 steps. A forced step
(`must_answer`) states the answer at once. Deterministic and instant: it drives the offline
quickstart and the downstream tests (step-wise data, training, publishing) without a model. It is
a silver teacher, not a result: its chains copy gold sentences.
"""

from __future__ import annotations

from steper_bench.generation.base import StepRequest, StepResult
from steper_bench.reasoning.answers import first_sentence
from steper_bench.records import GeneratorIdentity

BACKEND = "supporting-facts"


def _clean(sentence: str) -> str:
    """One loop-sized sentence: HotpotQA's leading spaces gone, cut as the loop would cut it."""
    s = first_sentence(sentence.strip())
    return s if s.endswith((".", "?", "!")) else s + "."


def _answer_clause(gold: str) -> str:
    return f"So the answer is: {gold.strip().rstrip('.')}."


class SupportingFactsGenerator:
    def __init__(self, model: str = BACKEND):
        self.identity = GeneratorIdentity(backend=BACKEND, model=model)
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0}

    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        self.stats["requests"] += len(requests)
        return [self._one(r) for r in requests]

    def _one(self, req: StepRequest) -> StepResult:
        q = req.question
        answer = _answer_clause(q.answer)
        sentences = [(title, _clean(text)) for title, text in q.supporting_sentences if text.strip()]
        # Which gold sentences were already stated: the loop keeps our text verbatim.
        pending = [(t, s) for t, s in sentences if not any(p.startswith(s) for p in req.previous)]
        if req.must_answer or not pending:
            return StepResult(text=answer, extra={"grounded": None})
        seen = {p.title for p in req.context}
        title, text = next(((t, s) for t, s in pending if t in seen), pending[0])
        if len(pending) == 1:
            text = f"{text} {answer}"
        return StepResult(text=text, tokens=len(text.split()), extra={"grounded": title in seen})

    def close(self) -> None:
        pass


def make(cfg=None, cache=None, max_new_tokens: int = 64) -> SupportingFactsGenerator:
    """Factory used by `make_generator`; `cache` and `max_new_tokens` do not apply here."""
    model = getattr(cfg, "model", None) or BACKEND
    return SupportingFactsGenerator(model)

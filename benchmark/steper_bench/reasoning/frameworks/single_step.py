"""Single-step RAG (the main table's "Vanilla-RAG" baseline): retrieve once with the question
(top-K), then write the whole chain of thought in one generation, ending "So the answer is: X".

One step, no forced second generation: a generation without an answer ends the question with
stop reason max_steps. The prompt is IRCoT's template and demonstrations (a demonstration's
chain is shown whole, as in IRCoT's one-shot reader); the step is the generation's first line.
Step-wise data: the one step is the `final` example (the chain), so every method trains on the
same rows here; the judge grades it as aggregation.
"""

from __future__ import annotations

from steper_bench.reasoning.answers import extract_answer
from steper_bench.reasoning.frameworks.base import Framework
from steper_bench.reasoning.frameworks.ircot import answer_clause, clean_sentence


class SingleStep(Framework):
    name = "single-step"
    template = "ircot/step.j2"
    demos_key = "ircot"
    forced_answer = False
    fixed_steps = 1

    def query(self, question, previous, index, settings) -> str:
        return question.question

    def parse_step(self, text: str) -> str:
        line = text.lstrip().split("\n", 1)[0]
        return " ".join(line.split())

    def answer(self, step: str) -> str | None:
        return extract_answer(step)

    def roles(self, n: int) -> list[frozenset[str]]:
        return [frozenset({"last"})] * n

    def silver_step(self, req):
        """The whole gold chain at once: every supporting sentence, then the answer."""
        from steper_bench.generation.base import StepResult

        q = req.question
        seen = {p.title for p in req.context}
        sentences = [(t, clean_sentence(s)) for t, s in q.supporting_sentences if s.strip()]
        text = " ".join([s for _, s in sentences] + [answer_clause(q.answer)])
        grounded = all(t in seen for t, _ in sentences) if sentences else None
        return StepResult(text=text, tokens=len(text.split()), extra={"grounded": grounded})


FRAMEWORK = SingleStep()

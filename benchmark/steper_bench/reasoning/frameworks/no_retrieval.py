"""No retrieval (closed-book chain of thought, the main table's first baseline): one
generation from the question alone, no paragraphs retrieved or shown, ending "So the answer
is: X". Demonstrations are IRCoT's with their paragraphs left out (IRCoT's no_context_cot form).
Otherwise as single-step: one step, no forced second generation, graded as aggregation.
"""

from __future__ import annotations

from dataclasses import replace

from steper_bench.reasoning.frameworks.single_step import SingleStep


class NoRetrieval(SingleStep):
    name = "no-retrieval"
    retrieves = False

    def query(self, question, previous, index, settings) -> str:
        return ""

    def prepare_demos(self, demos):
        return [replace(d, paragraphs=()) for d in demos]


FRAMEWORK = NoRetrieval()

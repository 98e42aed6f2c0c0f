"""The framework seam: everything one reasoning framework decides, in one class.

The batched loop (reasoning/loop.py) asks its framework, per step: the retrieval query, the
prompt (template + demonstrations), the stop sequences and when a partial generation already
holds a whole step, how to cut a generation to one step, and whether that step ends the chain
with an answer. The step-wise builder (stepwise.py) asks it which role each step plays and how
steps join into a completion; the judge asks which steps each ability grades; the
supporting-facts silver teacher asks it to write a step from the gold annotation.

A step plays one or more ROLES: `first` (reasoning initialization), `middle` (expansion),
`last` (aggregation). Roles map to the step-wise data kinds (first / mid / final) and to the
judge's abilities (evaluation/abilities.py), so both follow the framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from steper_bench.generation import GeneratorError

if TYPE_CHECKING:
    from steper_bench.generation.base import StepRequest, StepResult
    from steper_bench.reasoning.loop import LoopSettings
    from steper_bench.records import Question

ROLES = ("first", "middle", "last")
KIND_OF_ROLE = {"first": "first", "middle": "mid", "last": "final"}


class SilverUnavailable(GeneratorError):
    """The supporting-facts teacher cannot write this framework's steps for this dataset."""


class Framework:
    """Defaults are IRCoT's shape; each framework module overrides what differs."""

    name = ""
    template = ""  # packaged step template under reasoning/prompts/
    demos_key = ""  # which demonstrations of a dataset spec (DatasetSpec.demos) it shows
    retrieves = True  # False: no retrieval at all (closed book)
    forced_answer = True  # after max_steps, one more step (no retrieval) that must answer
    fixed_steps: int | None = None  # a framework with a fixed number of steps (single-step: 1)
    stop: tuple[str, ...] = ("\n",)  # stop sequences sent with every request
    step_prefix = " "  # a completion is step_prefix + joiner.join(steps)
    joiner = " "

    # -- the loop ------------------------------------------------------------------------------
    def steps(self, max_steps: int) -> int:
        """Steps before the forced one: the recipe's framework.max_steps unless fixed."""
        return self.fixed_steps or max_steps

    def query(self, question: Question, previous: Sequence[str], index: int, settings: LoopSettings) -> str:
        """The retrieval query of step `index` (1-based); "" retrieves nothing new."""
        raise NotImplementedError

    def parse_step(self, text: str) -> str:
        """Cut a raw generation to the one step it contributes ("" when it holds none)."""
        raise NotImplementedError

    def complete(self, text: str) -> bool:
        """Whether a partial generation already holds its whole step (early stop for local
        models; HTTP backends rely on `stop`)."""
        return any(s in text for s in self.stop)

    def answer(self, step: str) -> str | None:
        """The final answer when this step ends the chain, else None."""
        raise NotImplementedError

    def prepare_demos(self, demos: list) -> list:
        """The demonstrations as this framework shows them (no-retrieval drops their paragraphs)."""
        return demos

    # -- step-wise data and the judge ------------------------------------------------------------
    def roles(self, n: int) -> list[frozenset[str]]:
        """The roles of steps 1..n: first, middles, last (a one-step chain is first and last)."""
        if n == 1:
            return [frozenset({"first", "last"})]
        return [frozenset({"first"})] + [frozenset({"middle"})] * (n - 2) + [frozenset({"last"})] if n else []

    def completion(self, steps: Sequence[str]) -> str:
        """The text a model writes after a prompt that ends with the previous steps."""
        return self.step_prefix + self.joiner.join(s.strip() for s in steps)

    # -- the supporting-facts silver teacher ----------------------------------------------------
    def silver_step(self, request: StepRequest) -> StepResult:
        raise SilverUnavailable(f"the supporting-facts teacher cannot write {self.name} steps")

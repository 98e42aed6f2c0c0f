"""The student side of the multi-step engine: questions, retriever, generator, loop settings.

The same `run_loop` that builds teacher trajectories runs here with `role="student"` settings
(eval.few_shot, eval.max_new_tokens). The retrieval corpus is the one the build used: pooled
over the train and test questions of the recipe's source, or what `corpus.source` /
`corpus.pool_splits` name (retrieval.load_corpus).

`clock` holds where the time went (build's phases): load, index, model_load, and retrieval /
generation inside the loop; `loop_s` is the loop's whole time (scoring = lm-eval's time minus it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from steper_bench.recipe import GeneratorConfig, Recipe
from steper_bench.records import Question, Trajectory
from steper_bench.timing import PhaseClock, Timed


@dataclass
class StudentRunner:
    questions: list[Question]  # the evaluated questions, in order
    retriever: object
    generator: object
    settings: object  # reasoning.loop.LoopSettings
    recipe_hash: str = ""
    dataset_revision: str | None = None
    clock: PhaseClock = field(default_factory=PhaseClock)
    progress: bool = True
    loop_s: float = 0.0  # the loops' whole time, retrieval and generation included

    def __post_init__(self) -> None:
        self.by_id = {q.id: q for q in self.questions}

    @classmethod
    def from_recipe(cls, recipe: Recipe, cfg: GeneratorConfig, *, limit: int | None = None,
                    cache=None, progress: bool = True, few_shot: int | None = None) -> StudentRunner:
        from steper_bench.generation import make_generator
        from steper_bench.reasoning.loop import LoopSettings
        from steper_bench.retrieval import make_retriever
        from steper_bench.runs import RunPaths
        from steper_bench.sources import load_questions

        clock = PhaseClock()
        split = recipe.eval.split
        with clock("load"):
            loaded = load_questions(recipe, split)
            questions = loaded.questions
            limit = limit or recipe.eval.limit
            if limit:
                questions = questions[:limit]
            pool = list(loaded.questions)
            other = "train" if split == "test" else "test"
            if recipe.corpus.mode == "pooled" and _has_split(recipe, other):
                pool = load_questions(recipe, other).questions + pool  # the build's corpus: train + test
        with clock("index"):
            retriever = make_retriever(recipe, pool, RunPaths.for_recipe(recipe).indexes, cache, progress)
        with clock("model_load"):
            settings = LoopSettings.from_recipe(recipe, role="student", few_shot=few_shot)
            generator = make_generator(cfg, cache, max_new_tokens=settings.max_new_tokens)
        return cls(questions, retriever, generator, settings, recipe.hash, loaded.revision, clock, progress)

    def run(self, questions: list[Question]) -> list[Trajectory]:
        """One multi-step loop over all of them: every step is one batch across questions."""
        from steper_bench.reasoning.loop import run_loop

        t = time.perf_counter()
        out = run_loop(questions, Timed(self.retriever, self.clock, "retrieval"),
                       Timed(self.generator, self.clock, "generation"), self.settings,
                       progress=self.progress, recipe_hash=self.recipe_hash)
        self.loop_s += time.perf_counter() - t
        return out

    def endpoints(self) -> list[dict]:
        """The student endpoints' counters (an OpenAI-compatible student; none otherwise)."""
        return self.generator.endpoints() if hasattr(self.generator, "endpoints") else []

    def close(self) -> None:
        close = getattr(self.generator, "close", None)
        if close:
            close()


def _has_split(recipe: Recipe, split: str) -> bool:
    return recipe.source.has_split(split)

"""`steper-multistep`: an lm-eval model whose generate_until runs the multi-step loop.

All requests go through ONE loop run (every step one batch across all questions); predictions
come back in request order. lm-eval does not keep the step trace, so the trajectories stay on
the model (`trajectories`, by question id) for the results store.
"""

from __future__ import annotations

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from steper_bench.records import Trajectory


@register_model("steper-multistep")
class MultiStepLM(LM):
    def __init__(self, runner=None, recipe: str | None = None, model: str = "supporting-facts",
                 sets: str = "", limit: int | str | None = None, progress: bool = True, **_ignored):
        super().__init__()
        if runner is None:
            if not recipe:
                raise ValueError("steper-multistep needs recipe=PATH (and model=SPEC) in --model_args")
            runner = _runner_from_args(recipe, model, sets, limit, progress)
        self.runner = runner
        self.trajectories: dict[str, Trajectory] = {}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        ids = [r.doc["id"] for r in requests]
        unknown = [i for i in ids if i not in self.runner.by_id]
        if unknown:
            raise KeyError(f"{len(unknown)} requested question(s) not loaded by the model, e.g. {unknown[0]!r}")
        unique = list(dict.fromkeys(ids))
        trajs = self.runner.run([self.runner.by_id[i] for i in unique])
        self.trajectories.update({t.question_id: t for t in trajs})
        return [self.trajectories[i].prediction or "" for i in ids]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("steper-multistep only generates (output_type: generate_until)")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("steper-multistep only generates (output_type: generate_until)")


def _runner_from_args(recipe_path: str, spec: str, sets: str, limit, progress):
    from steper_bench.cache import RequestCache
    from steper_bench.evaluation.models import parse_model_spec
    from steper_bench.evaluation.runner import StudentRunner
    from steper_bench.recipe import load_recipe
    from steper_bench.runs import RunPaths

    recipe = load_recipe(recipe_path, [s for s in str(sets).split(";") if s])
    cfg, _ = parse_model_spec(spec, recipe)
    cache = RequestCache(RunPaths.for_recipe(recipe).cache)
    return StudentRunner.from_recipe(recipe, cfg, limit=int(limit) if limit else None, cache=cache, progress=progress)

"""Teacher trajectories -> step-wise distillation examples (StepER) and a vanilla-KD baseline.

For a trajectory with steps R1..Rn (Pt = the paragraphs the teacher saw at step t, which
accumulate: step t's `context_pids`), the default (`dataset.final_target: chain`, the paper's):

| config     | prompt                       | completion                                  |
| ---------- | ---------------------------- | ------------------------------------------- |
| first      | Q + P1                       | R1 (reasoning initialization)               |
| mid        | Q + P1..Pt + R1..R(t-1)      | Rt, one example per 1 < t < n (expansion)   |
| final      | Q + P1..Pn                   | R1 ... Rn, ending "So the answer is: X"     |
| vanilla_kd | Q + P1..Pn                   | R1 ... Rn (the same row as final)           |

Vanilla-KD is "final-step data only"; StepER adds the first and mid rows (paper, Figure 1).
`final_target: last-step` (ours, an earlier reading) makes `final` the last step alone,
Q + P1..Pn + R1..R(n-1) -> Rn. A 1-step chain gives only a `final` example: its one step both
starts and concludes the reasoning.

Which step is first / middle / last, and how steps join into a completion, is the framework's
(reasoning/frameworks/): IRCoT's completion is " " + sentences joined by spaces, Self-Ask's the
steps joined by newlines. Prompts come from `LoopSettings.prompt`, the function the loop uses,
with ZERO demonstrations, so a student trains on exactly the prompts it sees at evaluation
(eval.few_shot = 0); a step the loop forced (index > max_steps) keeps its "answer now" line.

`trajectories` holds every trajectory (kept or not, with a `kept` flag) as JSON-able columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from steper_bench.reasoning.loop import LoopSettings
from steper_bench.records import Trajectory

STEP_CONFIGS = ("first", "mid", "final", "vanilla_kd")
CONFIGS = STEP_CONFIGS + ("trajectories",)


def _features():
    from datasets import Features, Sequence as Seq, Value

    s = Value("string")
    example = Features({
        "id": s, "question_id": s, "dataset": s, "split": s, "kind": s, "step_index": Value("int32"),
        "prompt": s, "completion": s, "retrieved_pids": Seq(s), "context_pids": Seq(s),
        "teacher": s, "recipe_hash": s,
    })
    step = {
        "index": Value("int32"), "query": s, "retrieved_pids": Seq(s), "new_pids": Seq(s),
        "context_pids": Seq(s), "prompt_hash": s, "reasoning": s, "latency_s": Value("float64"),
        "tokens": Value("int64"), "grounded": Value("bool"), "error": s, "cached": Value("bool"),
    }
    paragraph = {"pid": s, "title": s, "text": s, "is_supporting": Value("bool")}
    trajectory = Features({
        "id": s, "question_id": s, "dataset": s, "split": s, "question": s, "answers": Seq(s),
        "generator": {"backend": s, "model": s, "base_url": s, "revision": s},
        "teacher": s, "steps": [step], "paragraphs": [paragraph], "reasoning": Seq(s),
        "n_steps": Value("int32"), "prediction": s, "stop_reason": s, "em": Value("float64"),
        "f1": Value("float64"), "acc": Value("float64"), "kept": Value("bool"), "recipe_hash": s,
    })
    return example, trajectory


def _example(t: Trajectory, kind: str, step_index: int, prompt: str, completion: str) -> dict[str, Any]:
    step = t.steps[step_index - 1]
    return {
        "id": f"{t.question_id}:{kind}:{step_index}", "question_id": t.question_id, "dataset": t.dataset,
        "split": t.split, "kind": kind, "step_index": step_index, "prompt": prompt, "completion": completion,
        "retrieved_pids": list(step.retrieved_pids), "context_pids": list(step.context_pids),
        "teacher": t.generator.model, "recipe_hash": t.recipe_hash,
    }


FINAL_TARGETS = ("chain", "last-step")


def expand(trajectory: Trajectory, settings: LoopSettings | None = None, *, final_target: str = "chain") -> dict[str, list[dict]]:
    """One trajectory's examples per step config (first, mid, final, vanilla_kd).

    `settings` are the student's loop settings (framework, template, paragraph cut, max_steps;
    its demonstrations are not used: training prompts are zero-shot)."""
    if final_target not in FINAL_TARGETS:
        raise ValueError(f"final_target must be one of {', '.join(FINAL_TARGETS)}, got {final_target!r}")
    settings = replace(settings or LoopSettings(), demos=[])
    fw = settings.framework
    t = trajectory
    n = len(t.steps)
    out: dict[str, list[dict]] = {c: [] for c in STEP_CONFIGS}
    if n == 0:
        return out
    missing = {pid for s in t.steps for pid in s.context_pids} - t.paragraphs.keys()
    if missing:
        raise ValueError(f"trajectory {t.question_id}: context pids without paragraphs: {sorted(missing)[:5]}")
    steps = [s.reasoning.strip() for s in t.steps]

    def prompt(index: int, previous: Sequence[str]) -> str:
        context = [t.paragraphs[pid] for pid in t.steps[index - 1].context_pids]
        return settings.prompt(t.question, context, previous, index)

    def one_step(kind: str, index: int) -> dict:  # the step alone, after the steps before it
        return _example(t, kind, index, prompt(index, steps[: index - 1]), fw.completion([steps[index - 1]]))

    chain = _example(t, "final", n, prompt(n, []), fw.completion(steps))
    for index, roles in enumerate(fw.roles(n), 1):
        if "first" in roles and n > 1:
            out["first"].append(one_step("first", index))
        if "middle" in roles:
            out["mid"].append(one_step("mid", index))
        if "last" in roles:
            out["final"].append(chain if final_target == "chain" else one_step("final", index))
    # Vanilla KD: the final context with no previous steps, the whole chain as the target.
    out["vanilla_kd"].append({**chain, "id": f"{t.question_id}:vanilla_kd:{n}", "kind": "vanilla_kd"})
    return out


def trajectory_row(t: Trajectory, kept: bool) -> dict[str, Any]:
    d = t.to_dict()
    d["generator"] = {k: v or "" for k, v in d["generator"].items()}
    return {**d, "id": t.question_id, "teacher": t.generator.model, "reasoning": t.reasoning,
            "n_steps": len(t.steps), "kept": kept}


def build_rows(
    trajectories: Sequence[Trajectory], *, keep: Callable[[Trajectory], bool] | None = None, **expand_kw: Any
) -> dict[str, list[dict]]:
    """Rows per config for one split: step configs from the kept trajectories, all of them in
    `trajectories`."""
    rows: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for t in trajectories:
        kept = keep(t) if keep is not None else True
        rows["trajectories"].append(trajectory_row(t, kept))
        if kept:
            for config, examples in expand(t, **expand_kw).items():
                rows[config].extend(examples)
    return rows


def _dataset(rows: list[dict], features):
    from datasets import Dataset

    # Column-wise, so an empty split still gets the full schema (from_list([]) loses it).
    return Dataset.from_dict({name: [r[name] for r in rows] for name in features}, features=features)


def build_dataset_dict(
    trajectories_by_split: dict[str, Sequence[Trajectory]],
    *,
    keep: Callable[[Trajectory], bool] | None = None,
    **expand_kw: Any,
) -> dict[str, Any]:
    """{config: datasets.DatasetDict} with one split per key of `trajectories_by_split`.

    Every config has every split (possibly empty) with fixed features, so the Parquet schema
    does not depend on which kinds a split happens to contain."""
    from datasets import DatasetDict

    example_features, trajectory_features = _features()
    per_split = {split: build_rows(ts, keep=keep, **expand_kw) for split, ts in trajectories_by_split.items()}
    out = {}
    for config in CONFIGS:
        features = trajectory_features if config == "trajectories" else example_features
        out[config] = DatasetDict({
            split: _dataset(rows[config], features) for split, rows in per_split.items()
        })
    return out

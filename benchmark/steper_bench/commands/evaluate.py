"""`steper-bench eval`: evaluate students with the multi-step loop, store the results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from steper_bench.commands.common import RecipeArg, SetOpt, console, load, user_facing
from steper_bench.evaluation.abilities import NAMES as ABILITIES

ModelOpt = Annotated[
    Optional[list[str]],
    typer.Option("--model", help="Student: local path / Hub id, openai:MODEL@BASE_URL, vllm:MODEL, supporting-facts, "
                                  "teacher, or trained:METHOD (repeatable; default: eval.models + teacher)."),
]
DbOpt = Annotated[Optional[Path], typer.Option("--db", help="Results file (default: the recipe's eval.db, relative to the current folder).")]


def evaluate(
    recipe: RecipeArg,
    model: ModelOpt = None,
    db: DbOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run even when this run already finished in the file.")] = False,
    few_shot: Annotated[Optional[int], typer.Option("--few-shot", min=0, help=(
        "Demonstrations for the --model(s) given (default: framework.few_shot for the teacher, else eval.few_shot)."))] = None,
) -> None:
    """Run students through the multi-step loop on the eval split(s); score with lm-eval; store in DuckDB."""
    from steper_bench.evaluation import default_models
    from steper_bench.evaluation import evaluate as run_eval
    from steper_bench.evaluation.evaluate import entry_label, eval_targets
    from steper_bench.recipe import EvalModel

    r = load(recipe, set_)
    entries = [EvalModel(model=m, few_shot=few_shot) for m in model] if model else default_models(r)
    results = []
    for dataset, entry in ((d, e) for d in eval_targets(r) for e in entries):
        name = (dataset or r.source).dataset
        console.print(f"[bold]eval[/] {escape(entry.model)} on {name} ({r.eval.split})", highlight=False)
        with user_facing():
            res = run_eval(r, model=entry, dataset=dataset, db=db, force=force)
        if res.skipped_existing:
            console.print(f"  run {res.run_id} already finished in {res.db}: skipped (--force re-runs it)", markup=False)
        if res.judge is not None and res.judge.failed:
            console.print(f"  [yellow]judge: {res.judge.failed} of {res.judge.judged} judgments failed[/]")
        results.append((entry_label(entry, dataset), res))
    console.print(score_table(results))


def _cell(m: dict | None, pct: bool = True) -> str:
    if not m:
        return "–"
    k = 100 if pct else 1
    if m.get("ci_low") is None:
        return f"{k * m['mean']:.1f}"
    half = (m["ci_high"] - m["ci_low"]) / 2
    return f"{k * m['mean']:.1f}±{k * half:.1f}"


def score_table(results) -> Table:
    """One row per evaluated system: EM / F1 / Acc (± half the 95% bootstrap interval), steps, and
    the judge's scores when there are any. Fits an 80-column terminal."""
    judged = any(f"judge_{a}" in r.metrics for _, r in results for a in ABILITIES)
    from rich import box

    t = Table(title="EM / F1 / Acc in %, ± half a 95% bootstrap interval", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ["system", "n", "EM", "F1", "Acc", "steps"] + (["judge i/e/a"] if judged else [])
    for col in cols:
        t.add_column(col, justify="left" if col == "system" else "right", overflow="fold")
    for label, r in results:
        m = r.metrics
        system = label if r.method in label else f"{label} ({r.method})"
        row = [system, str(r.n), _cell(m.get("em")), _cell(m.get("f1")), _cell(m.get("acc")),
               f"{m['steps_used']['mean']:.1f}" if "steps_used" in m else "–"]
        if judged:
            row.append("/".join(f"{m[f'judge_{a}']['mean']:.1f}" if f"judge_{a}" in m else "–" for a in ABILITIES))
        t.add_row(*row)
    return t

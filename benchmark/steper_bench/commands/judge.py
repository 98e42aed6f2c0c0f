"""`steper-bench judge`: LLM-as-judge scores for stored runs, or a pairwise comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from steper_bench.commands.common import RecipeArg, SetOpt, console, load, user_facing
from steper_bench.evaluation.abilities import NAMES as ABILITIES


def judge(
    recipe: RecipeArg,
    db: Annotated[Optional[Path], typer.Option("--db", help="Results file (default: the recipe's eval.db).")] = None,
    run: Annotated[Optional[list[str]], typer.Option("--run", help="Run id to judge (repeatable; default: this recipe's finished runs).")] = None,
    pairwise: Annotated[Optional[tuple[str, str]], typer.Option("--pairwise", help="Compare two runs: RUN_A RUN_B.")] = None,
    set_: SetOpt = None,
) -> None:
    """Grade reasoning initialization / expansion / aggregation with an LLM judge (1-5, rubric steper-judge-v1)."""
    from steper_bench.evaluation.evaluate import default_db
    from steper_bench.evaluation.judge import judge_pairwise, judge_runs

    r = load(recipe, set_)
    db = db or default_db(r)
    with user_facing():
        if pairwise:
            s = judge_pairwise(r, db=db, run_a=pairwise[0], run_b=pairwise[1])
            t = Table(title=f"pairwise {s.run_a} vs {s.run_b} (judge {s.judge_model}, {s.rubric_version})")
            for col in ("ability", "win (A)", "tie", "loss", "failed"):
                t.add_column(col, justify="left" if col == "ability" else "right")
            for ability, c in s.counts.items():
                t.add_row(ability, str(c["win"]), str(c["tie"]), str(c["loss"]), str(c["failed"]))
            console.print(t)
            return
        s = judge_runs(r, db=db, run_ids=run or None)
    t = Table(title=f"judge {s.judge_model} ({s.rubric_version}): {s.judged} judgments, {s.failed} failed, "
                    f"{s.cached} cached, {s.seconds:.1f}s")
    for col in ("run", *ABILITIES):
        t.add_column(col, justify="left" if col == "run" else "right")
    for rid, means in s.means.items():
        t.add_row(rid, *(f"{means[a]:.2f}" if a in means else "–" for a in ABILITIES))
    console.print(t)
    for e in s.errors:
        console.print(f"[yellow]failed:[/] {escape(e)}", highlight=False)

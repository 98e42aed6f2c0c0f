from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, fail, load, user_facing


def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[Optional[list[str]], typer.Option(
        "--force", help="Redo a stage even if done: build, train, eval, judge or all (repeatable).")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Print where the time went per stage and phase.")] = False,
    db: Annotated[Optional[Path], typer.Option(help="Results DuckDB file (default: eval.db).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build -> train -> eval (-> judge) into the results database; finished stages are skipped."""
    from steper_bench.pipeline import parse_force, profile_table
    from steper_bench.pipeline import run as run_pipeline

    r = load(recipe, set_)
    try:
        stages = parse_force(force or [])
    except ValueError as e:
        fail(str(e))
    with user_facing():
        report = run_pipeline(r, force=stages, db=db, progress=not quiet,
                              say=lambda m: console.print(m, highlight=False, markup=False))
    if profile:
        console.print(profile_table(report))
    from steper_bench.commands.evaluate import score_table

    if report.results:
        console.print(score_table(report.results))
    for what, where in report.where.items():
        console.print(f"{what}: {where}", highlight=False, markup=False)

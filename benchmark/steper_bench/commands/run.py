from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, fail, load, user_facing
from steper_bench.recipe import RecipeError


def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[list[str] | None, typer.Option(
        "--force", help="Redo a stage even if done: build, train, eval, judge or all (repeatable).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Grid recipes: run only the cells with KEY=VALUE (repeatable; `validate` lists cells).")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Print where the time went per stage and phase.")] = False,
    db: Annotated[Path | None, typer.Option(help="Results DuckDB file (default: eval.db).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build -> train -> eval (-> judge) into the results database; finished stages are skipped.
    A grid recipe (matrix:) runs each of its cells in turn."""
    from steper_bench import grid
    from steper_bench.pipeline import parse_force

    try:
        stages = parse_force(force or [])
        picked = grid.select(grid.cells(recipe), only) if (only or grid.raw_matrix(recipe)) else None
    except (ValueError, RecipeError) as e:
        fail(str(e))
    if picked is None:
        _run_one(load(recipe, set_), stages, db, quiet, profile)
        return
    for cell in picked:
        console.print(f"cell {cell.index} ({len(picked)} to run): {cell.label}", highlight=False, markup=False)
        try:
            r = grid.load_cell(recipe, cell, set_)
        except RecipeError as e:
            fail(str(e))
        _run_one(r, stages, db, quiet, profile)
    console.print(f"grid: {len(picked)} cell(s) done", highlight=False, markup=False)


def _run_one(r, stages, db, quiet: bool, profile: bool) -> None:
    from steper_bench.commands.evaluate import score_table
    from steper_bench.pipeline import profile_table
    from steper_bench.pipeline import run as run_pipeline

    with user_facing():
        report = run_pipeline(r, force=stages, db=db, progress=not quiet,
                              say=lambda m: console.print(m, highlight=False, markup=False))
    if profile:
        console.print(profile_table(report))
    if report.results:
        console.print(score_table(report.results))
    for what, where in report.where.items():
        console.print(f"{what}: {where}", highlight=False, markup=False)

from __future__ import annotations

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, fail, load
from steper_bench.recipe import RecipeError


def validate(recipe: list[RecipeArg], set_: SetOpt = None) -> None:
    """Validate recipes; print each resolved recipe and its content hash (a grid: each cell)."""
    from steper_bench import grid

    n = 0
    for path in recipe:
        try:
            all_cells = grid.cells(path)
        except RecipeError as e:
            fail(str(e))
        if grid.raw_matrix(path) is None:
            r = load(path, set_)
            typer.echo(f"# {path}")
            typer.echo(r.to_yaml().rstrip())
            _hashes(r)
            n += 1
            continue
        typer.echo(f"# {path}: a grid of {len(all_cells)} cell(s)")
        for cell in all_cells:
            try:
                r = grid.load_cell(path, cell, set_)
            except RecipeError as e:
                fail(str(e))
            typer.echo(f"# cell {cell.index}: {cell.label}")
            _hashes(r)
            n += 1
    console.print(f"[green]ok[/]: {n} recipe(s) valid")


def _hashes(r) -> None:
    trains = ", ".join(f"{m.name} {r.train_hash(m)}" for m in r.train.methods)
    typer.echo(f"# hash: {r.hash}  (build {r.stage_hash('build')}, train: {trains}; eval {r.stage_hash('eval')})")

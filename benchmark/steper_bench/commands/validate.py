from __future__ import annotations

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, load


def validate(recipe: list[RecipeArg], set_: SetOpt = None) -> None:
    """Validate recipes; print each resolved recipe and its content hash."""
    for path in recipe:
        r = load(path, set_)
        typer.echo(f"# {path}")
        typer.echo(r.to_yaml().rstrip())
        trains = ", ".join(f"{m.name} {r.train_hash(m)}" for m in r.train.methods)
        typer.echo(f"# hash: {r.hash}  (build {r.stage_hash('build')}, train: {trains}; eval {r.stage_hash('eval')})")
    console.print(f"[green]ok[/]: {len(recipe)} recipe(s) valid")

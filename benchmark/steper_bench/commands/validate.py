from __future__ import annotations

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, load


def validate(recipe: list[RecipeArg], set_: SetOpt = None) -> None:
    """Validate recipes; print each resolved recipe and its content hash."""
    for path in recipe:
        r = load(path, set_)
        typer.echo(f"# {path}")
        typer.echo(r.to_yaml().rstrip())
        typer.echo(f"# hash: {r.hash}  (build {r.stage_hash('build')}, train {r.stage_hash('train')}, eval {r.stage_hash('eval')})")
    console.print(f"[green]ok[/]: {len(recipe)} recipe(s) valid")

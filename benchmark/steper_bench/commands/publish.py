from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, load, user_facing


def publish(
    recipe: RecipeArg,
    set_: SetOpt = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Built dataset folder (default: the recipe's run).")] = None,
    repo_id: Annotated[Optional[str], typer.Option(help="Hub dataset repo (default: dataset.hub_repo).")] = None,
    private: Annotated[Optional[bool], typer.Option("--private/--public", help="Visibility of a new repo.")] = None,
) -> None:
    """Push every config, the card and the recipe to the Hub; tag the recipe hash (re-runnable)."""
    from steper_bench.publish import publish as run_publish

    r = load(recipe, set_)
    with user_facing():
        url = run_publish(r, data_dir=data_dir, repo_id=repo_id, private=private,
                          log=lambda m: console.print(m, highlight=False, markup=False))
    typer.echo(url)

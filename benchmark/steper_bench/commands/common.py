"""Options and error handling shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from steper_bench.recipe import Recipe, RecipeError, load_recipe

console = Console(stderr=True, soft_wrap=True)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a recipe field: dotted.key=value (repeatable)."),
]


def load(recipe: Path, sets: list[str] | None) -> Recipe:
    """Load a recipe or exit with the error a user can act on (exit code 2)."""
    try:
        return load_recipe(recipe, sets or [])
    except RecipeError as e:
        fail(str(e))


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)

"""Options and error handling shared by every command."""

from __future__ import annotations

import errno
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

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
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


# A full disk, a read-only folder or a missing permission: the message says which file.
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM}


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message tells a user what to fix: print it, no traceback."""
    from steper_bench.build import BuildError
    from steper_bench.cache import CacheError
    from steper_bench.evaluation.store import StoreError
    from steper_bench.generation import GeneratorError
    from steper_bench.publish import PublishError
    from steper_bench.sources.base import SourceError

    return (RecipeError, BuildError, CacheError, StoreError, GeneratorError, PublishError, SourceError,
            FileNotFoundError)


@contextmanager
def user_facing():
    """The error boundary of a stage command: known errors become one clear line and exit 2.
    Finished work is already on disk (every writer writes to a temporary name, then renames)."""
    try:
        yield
    except user_errors() as e:
        fail(str(e))
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        where = f" {e.filename}" if e.filename else ""
        fail(f"cannot write{where}: {e.strerror or e}. Free space or make the folder writable, then re-run: "
             "finished work is kept and the run resumes.")

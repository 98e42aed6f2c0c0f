from __future__ import annotations

from typing import Annotated

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, load, user_facing


def index(
    recipe: RecipeArg,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Build the recipe's retrieval index once (resumable after a kill); build and eval reuse it."""
    from steper_bench.retrieval import index_recipe

    r = load(recipe, set_)
    with user_facing():
        s = index_recipe(r, progress=not quiet)
    parts = [f"{s['backend']} index of {s['paragraphs']:,} paragraphs (corpus {s['corpus_hash']})"]
    if s["store"]:
        parts.append(f"paragraph store: {s['store']['written']} of {s['store']['pieces']} pieces written now")
    if s["index"]:
        parts.append(", ".join(f"{k} {v}" for k, v in s["index"].items()))
    parts.append(f"{s['seconds']:.1f}s")
    console.print("; ".join(parts), markup=False, highlight=False)
    console.print(f"in {s['folder']}", markup=False, highlight=False)

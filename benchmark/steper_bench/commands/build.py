from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steper_bench.commands.common import RecipeArg, SetOpt, console, load, user_facing


def build(
    recipe: RecipeArg,
    set_: SetOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Build only the first N questions of each split.")] = None,
    shard: Annotated[Optional[str], typer.Option(help="Build shard i of N (e.g. 0/4); join with --merge.")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Join the shards' trajectories, then write the dataset.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and a request bound; call nothing.")] = False,
    output: Annotated[Optional[Path], typer.Option(help="Dataset folder (default: <run>/dataset).")] = None,
    push: Annotated[bool, typer.Option("--push", help="Publish to dataset.hub_repo after building.")] = False,
    strict: Annotated[Optional[bool], typer.Option("--strict/--lenient", help="Fail on malformed source records.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the teacher, filter, expand step-wise and write the dataset (resumable)."""
    from steper_bench.build import build as run_build

    r = load(recipe, set_)
    with user_facing():
        summary = run_build(r, limit=limit, shard=shard, merge=merge, dry_run=dry_run, output=output, push=push,
                            strict=strict, progress=not quiet, log=lambda m: console.print(m, highlight=False, markup=False))
    if summary.shard:
        i, n = summary.shard
        console.print(f"shard {i}/{n} done; after all {n} shards run: steper-bench build {recipe} --merge", markup=False)

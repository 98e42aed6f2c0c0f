"""`steper-bench report`: the leaderboard in the paper's layout, as Markdown on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steper_bench.commands.common import fail


def report(
    db: Annotated[Path, typer.Option("--db", help="Results file written by steper-bench eval.")] = Path("results.duckdb"),
) -> None:
    """Print EM / F1 / Acc per dataset and their average, one row per method and model (Markdown)."""
    from steper_bench.evaluation.report import leaderboard_markdown
    from steper_bench.evaluation.store import StoreError, connect

    try:
        con = connect(db, read_only=True)
    except StoreError as e:
        fail(str(e))
    try:
        typer.echo(leaderboard_markdown(con), nl=False)
    finally:
        con.close()

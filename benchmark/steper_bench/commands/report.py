"""`steper-bench report`: the leaderboard in the paper's layout, as Markdown on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from steper_bench.commands.common import fail


def report(
    db: Annotated[Path, typer.Option("--db", help="Results file written by steper-bench eval.")] = Path("results.duckdb"),
    paper: Annotated[bool, typer.Option("--paper", help="Every table of the paper: main, baselines, ablations, "
                                        "weighting, size, out-of-domain, data size, latency.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="markdown or json (json: with --paper).")] = "markdown",
) -> None:
    """Print EM / F1 / Acc per dataset and their average, one row per method and model (Markdown);
    --paper: the paper's tables, missing cells shown as missing."""
    from steper_bench.evaluation.report import leaderboard_markdown
    from steper_bench.evaluation.store import StoreError, connect

    if fmt not in ("markdown", "json"):
        fail(f"--format {fmt}: choose markdown or json")
    if fmt == "json" and not paper:
        fail("--format json goes with --paper (the plain report is one Markdown table)")
    try:
        con = connect(db, read_only=True)
    except StoreError as e:
        fail(str(e))
    try:
        if not paper:
            typer.echo(leaderboard_markdown(con), nl=False)
            return
        from steper_bench.evaluation.paper import markdown, paper_tables

        tables = paper_tables(con)
        typer.echo(json.dumps(tables, indent=1) if fmt == "json" else markdown(tables), nl=fmt == "json")
    finally:
        con.close()

from __future__ import annotations

import os
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from steper_bench.commands.common import console, fail

DEFAULT_DB = "results.duckdb"


def resolve_db(db: Path | None, environ=os.environ) -> Path:
    """--db, else STEPER_DB, else results.duckdb in the current directory."""
    env = environ.get("STEPER_DB", "").strip()
    return Path(db or env or DEFAULT_DB).expanduser().resolve()


def leaderboard(
    db: Annotated[
        Optional[Path],
        typer.Option("--db", help=f"Results DuckDB file (opened read-only). Default: $STEPER_DB, else {DEFAULT_DB}."),
    ] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Port to serve on (streamlit's default: 8501).")] = None,
    headless: Annotated[bool, typer.Option("--headless", help="Do not open a browser.")] = False,
    address: Annotated[
        Optional[str], typer.Option("--address", help="Interface to bind, e.g. 127.0.0.1 (default: streamlit's).")
    ] = None,
) -> None:
    """Open the Streamlit leaderboard over a results file (`streamlit run` on the packaged app)."""
    from steper_bench.leaderboard_app.queries import launch_command, shell_line

    db = resolve_db(db)
    if not db.exists():
        console.print(f"[yellow]note[/]: {escape(str(db))} does not exist yet; the page will say so until `steper-bench eval` writes it")
    env = {**os.environ, "STEPER_DB": str(db)}
    # The packaged app is a plain file in an installed wheel; as_file also covers zipped installs.
    with as_file(files("steper_bench.leaderboard_app") / "app.py") as app_file:
        cmd = launch_command(app_file, db, port, headless, address)
        console.print(f"running: {shell_line(cmd)}", highlight=False, markup=False)
        # Replace this process: Ctrl-C and SIGTERM reach streamlit directly, no orphan is left.
        try:
            os.execve(cmd[0], cmd, env)
        except OSError as e:
            fail(f"cannot start streamlit ({e}); install it with `pip install streamlit`")

"""The `steper-bench` command line. Each command lives in steper_bench/commands/<name>.py."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="steper-bench",
    help="StepER benchmark: build step-wise KD data, train, evaluate, compare.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    add_completion=False,
)

# (command name, module in steper_bench.commands, function name)
COMMANDS = [
    ("validate", "validate", "validate"),
    ("score", "score", "score"),
    ("index", "index", "index"),
    ("build", "build", "build"),
    ("publish", "publish", "publish"),
    ("train", "train", "train"),
    ("eval", "evaluate", "evaluate"),
    ("judge", "judge", "judge"),
    ("report", "report", "report"),
    ("leaderboard", "leaderboard", "leaderboard"),
    ("run", "run", "run"),
]

@app.callback()
def _options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show other libraries' logging, warnings and "
                                 "progress bars on the console (default: in runs/<run>/logs/<stage>.log)."),
) -> None:
    if not verbose:
        from steper_bench.console import quiet_libraries

        quiet_libraries()


for _name, _module, _func in COMMANDS:
    _mod = importlib.import_module(f"steper_bench.commands.{_module}")
    app.command(_name)(getattr(_mod, _func))


def main() -> None:  # python -m steper_bench
    app()

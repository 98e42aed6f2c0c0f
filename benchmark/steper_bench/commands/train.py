"""`steper-bench train RECIPE`: train a student per method in train.methods (or only --method).

Multi-GPU: accelerate launch --config_file recipes/accelerate/zero3.yaml -m steper_bench train RECIPE
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from steper_bench.commands.common import RecipeArg, SetOpt, console, load, user_facing
from steper_bench.methods import PRESETS


def train(
    recipe: RecipeArg,
    method: Annotated[
        Optional[str], typer.Option("--method", help=f"A name in train.methods or a preset ({' | '.join(PRESETS)}); default: train.methods.")
    ] = None,
    data: Annotated[
        Optional[str], typer.Option("--data", help="Built dataset folder or Hub dataset id (default: this build).")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Output folder (several methods: one subfolder each).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Resume from the last checkpoint in the output folder.")
    ] = True,
    sets: SetOpt = None,
) -> None:
    """Fine-tune the student on the step-wise data: StepER (difficulty-aware), its uniform ablation, vanilla KD."""
    from steper_bench.training import train as train_one
    r = load(recipe, sets)
    if method:  # train.methods was checked by the recipe schema
        with user_facing():
            r.method(method)
    methods = [method] if method else [m.name for m in r.train.methods]
    for m in methods:
        out = None if output is None else (output if len(methods) == 1 else output / m)
        console.print(f"[bold]train[/] {escape(m)} on {escape(str(data or r.train.data or 'the built dataset'))}")
        with user_facing():
            res = train_one(r, method=m, data=data, output=out, resume=resume)
        if res.skipped_existing:
            console.print(f"  {m}: already trained in {res.output_dir} (skipped in {res.seconds:.1f} s)", markup=False)
            continue
        learned = r.method(m).weighting == "difficulty"
        sig = ", ".join(f"{k}={v:.3f}" for k, v in res.sigmas.items()) if learned else r.method(m).weighting
        counts = ", ".join(f"{k}={n}" for k, n in res.n_examples.items())
        console.print(f"  {m}: {res.steps} steps in {res.seconds:.1f} s; examples {counts}; sigma {sig}", markup=False)
        console.print(f"  -> {res.output_dir}", markup=False)

"""`steper-bench score`: EM / F1 / Acc of a predictions file against a gold file.

The per-type table goes to stderr for people; the last stdout line is one JSON object
{"n", "em", "f1", "acc"} on a 0-1 scale for scripts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import typer
from rich.table import Table

from steper_bench import metrics
from steper_bench.commands.common import console, fail
from steper_bench.sources import SourceError, dataset_names, load_file


def score(
    dataset: str = typer.Option(..., "--dataset", help="Gold format: a registered dataset (hotpotqa, 2wikimultihopqa, musique, ...)."),
    gold: Path = typer.Option(..., "--gold", help="Gold file in the dataset's original format (JSON or JSONL)."),
    predictions: Path = typer.Option(..., "--predictions", help='JSONL of {"id": ..., "prediction": ...}.'),
) -> None:
    """Score predictions against gold answers (official HotpotQA EM/F1, and Acc)."""
    if dataset not in dataset_names():
        fail(f"--dataset {dataset!r}: unknown (known: {', '.join(dataset_names())})")
    try:
        questions = load_file(dataset, gold, strict=True, field="--gold").questions
    except SourceError as e:
        fail(f"{e} (is --dataset {dataset} the format of this file?)")
    if not questions:
        fail(f"--gold {gold}: no questions in the file")
    preds = read_predictions(predictions)
    known = {q.id for q in questions}
    missing = sum(q.id not in preds for q in questions)
    unknown = sum(pid not in known for pid in preds)

    by_type: dict[str, list[dict[str, float]]] = defaultdict(list)
    for q in questions:
        by_type[q.type or "-"].append(metrics.score(preds.get(q.id, ""), q.answers, metrics.rule_for(dataset)))
    everything = [s for rows in by_type.values() for s in rows]

    table = Table(title=f"{dataset}: {len(questions)} questions")
    for col in ("type", "n", "EM", "F1", "Acc"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for name in sorted(by_type):
        table.add_row(name, *_cells(by_type[name]))
    table.add_row("all", *_cells(everything), style="bold")
    console.print(table)
    if missing:
        console.print(f"[yellow]{missing} question(s) have no prediction: scored as empty answers[/]")
    if unknown:
        console.print(f"[yellow]{unknown} prediction id(s) are not in the gold file: ignored[/]")
    typer.echo(json.dumps({"n": len(everything), **_means(everything)}))


def read_predictions(path: Path) -> dict[str, str]:
    """JSONL {"id", "prediction"} -> {id: prediction}; a bad line is an error naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        fail(f"--predictions {path}: no such file")
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        fail(f"--predictions {path}: cannot read ({e})")
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})")
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("prediction", ""), (str, type(None))):
            fail(f'{path}:{n}: expected {{"id": ..., "prediction": "..."}}')
        out[str(row["id"])] = row.get("prediction") or ""
    return out


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in ("em", "f1", "acc")}


def _cells(rows: list[dict[str, float]]) -> list[str]:
    m = _means(rows)
    return [str(len(rows))] + [f"{100 * m[k]:.1f}" for k in ("em", "f1", "acc")]

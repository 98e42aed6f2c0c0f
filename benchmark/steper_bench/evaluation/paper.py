"""The paper's tables, read back from a results file: `steper-bench report --paper`.

    tables = paper_tables(con)      # {"main": [row, ...], "baselines": [...], ...}

Every table is a list of row objects in long form (one row per system and test set), with EM /
F1 / Acc in percent and their 95% bootstrap intervals, so JSON, Markdown, CSV and the
leaderboard's Paper view show the same numbers. A table lists the cells the paper's layout
expects for the students the file holds (each dataset, each method of the table); a cell with no
finished run is a row with `"missing": true` and null scores, never dropped.

    main           teacher, Vanilla-KD and StepER per student and dataset (paper Table 1)
    baselines      untrained students: few-shot IRCoT (ICL), single-step RAG, no retrieval
    step_ablation  vanilla-kd -> steper-first -> steper-first-mid -> steper, with judge scores
    weighting      StepER's difficulty-aware weights against uniform and fixed weights
    size_scaling   trained methods by student size
    ood            trained on one dataset (row), tested on each (column)
    data_scaling   trained methods by the number of training questions (train.train_questions)
    latency        accuracy against seconds and steps per question

Reads only `runs` and `metrics`: O(runs), whatever the number of samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

DATASETS = ("hotpotqa", "2wikimultihopqa", "musique")
KEYS = ("main", "baselines", "step_ablation", "weighting", "size_scaling", "ood", "data_scaling", "latency")
TITLES = {
    "main": "Main results (teacher, Vanilla-KD, StepER)",
    "baselines": "Baselines: untrained students (ICL few-shot IRCoT, single-step RAG, no retrieval)",
    "step_ablation": "Step-data ablation (+ judge scores per ability when graded)",
    "weighting": "Loss weighting: difficulty-aware vs uniform vs fixed",
    "size_scaling": "Student size",
    "ood": "Out-of-domain: trained on (row) x tested on (dataset)",
    "data_scaling": "Training-data size",
    "latency": "Latency vs accuracy",
}
ABLATION = ("vanilla-kd", "steper-first", "steper-first-mid", "steper")
TEACHER_METHODS = ("teacher", "silver")
ANSWERS = ("em", "f1", "acc")


def _runs(con):
    """Finished, in-domain-or-not runs with their metrics (the leaderboard's own query)."""
    from steper_bench.leaderboard_app import queries

    runs = queries.latest_per_dataset(queries.run_metrics(con, queries.Filters()))
    return [] if runs.empty else [{k: _num(v) for k, v in r.items()} for _, r in runs.iterrows()]


def _num(v):
    """Plain Python values: None for NaN / NA, numpy scalars unwrapped (JSON-ready)."""
    import pandas as pd

    if v is None or (not isinstance(v, (list, dict, str)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _scores(r: dict | None) -> dict:
    out: dict = {}
    for m in ANSWERS:
        mean = _num(r.get(m)) if r else None
        lo, hi = (_num(r.get(m + "_lo")), _num(r.get(m + "_hi"))) if r else (None, None)
        out[m] = None if mean is None else round(100 * mean, 2)
        out[m + "_ci"] = None if lo is None or hi is None else [round(100 * lo, 2), round(100 * hi, 2)]
    return out


def _row(ident: dict, r: dict | None, extra: Iterable[str] = ()) -> dict:
    row = {**ident, **_scores(r), "missing": r is None}
    for k in extra:
        row[k] = _num(r.get(k)) if r else None
    if r is not None:
        row["run_id"] = r["run_id"]
    return row


def _students(runs: list[dict]) -> list[str]:
    """Student models: those of trained or untrained-student rows, smallest first."""
    seen = {}
    for r in runs:
        if r["method"] not in TEACHER_METHODS:
            seen.setdefault(_base(r), _num(r.get("model_size_b")) or 0)
    return sorted(seen, key=lambda m: (seen[m], m))


def _base(r: dict) -> str:
    """The student a run's model started from: 'Qwen2.5-1.5B (steper-abc)' -> 'Qwen2.5-1.5B'."""
    name = str(r["model"])
    return name.split(" (", 1)[0] if " (" in name else name


def _datasets(runs: list[dict]) -> list[str]:
    present = {r["dataset"] for r in runs}
    return [d for d in DATASETS if d in present] + sorted(present - set(DATASETS)) or list(DATASETS)


def _in_domain(r: dict) -> bool:
    return r.get("trained_on") is None or r["trained_on"] == r["dataset"]


def _find(runs, **want) -> dict | None:
    hits = [r for r in runs if all(r.get(k) == v if k != "base" else _base(r) == v for k, v in want.items())]
    return hits[-1] if hits else None


def _trained(runs):
    return [r for r in runs if r["method"] not in (*TEACHER_METHODS, "base") and _in_domain(r)]


def main_table(runs, datasets) -> list[dict]:
    rows, trained, students = [], _trained(runs), _students(runs)
    for d in datasets:
        teacher = [r for r in runs if r["method"] in TEACHER_METHODS and r["dataset"] == d]
        for r in teacher or [None]:
            rows.append(_row({"method": r["method"] if r else "teacher", "model": r["model"] if r else None,
                              "dataset": d}, r))
        for student in students:
            for m in ("vanilla-kd", "steper"):
                r = _find(trained, method=m, base=student, dataset=d, framework="ircot")
                rows.append(_row({"method": m, "model": student, "dataset": d}, r))
    return rows


def baselines_table(runs, datasets) -> list[dict]:
    rows = []
    for student in _students(runs):
        for framework in ("ircot", "single-step", "no-retrieval"):
            for d in datasets:
                r = _find(runs, method="base", base=student, dataset=d, framework=framework)
                rows.append(_row({"method": "base", "model": student, "framework": framework, "dataset": d,
                                  "few_shot": r.get("few_shot") if r else None}, r))
    return rows


def ablation_table(runs, datasets) -> list[dict]:
    from steper_bench.evaluation.abilities import ABILITIES

    judge, trained = [f"judge_{a}" for a in ABILITIES], _trained(runs)
    return [_row({"method": m, "model": s, "dataset": d}, _find(trained, method=m, base=s, dataset=d), judge)
            for s in _students(runs) for m in ABLATION for d in datasets]


def _spec(r) -> dict:
    raw = r.get("method_spec")
    try:
        spec = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        spec = None
    return spec if isinstance(spec, dict) else {}  # runs before methods-as-data stored none


def weighting_table(runs, datasets) -> list[dict]:
    """StepER (difficulty) and every all-kinds method with uniform or fixed weights that was run."""
    trained = _trained(runs)
    methods = {"steper": {"weighting": "difficulty", "weights": None}}
    for r in trained:
        spec = _spec(r)
        if spec.get("weighting") in ("uniform", "fixed") and len(spec.get("kinds", [])) == 3:
            methods[r["method"]] = {"weighting": spec["weighting"], "weights": spec.get("weights")}
    return [_row({"method": m, **info, "model": s, "dataset": d}, _find(trained, method=m, base=s, dataset=d))
            for s in _students(runs) for m, info in methods.items() for d in datasets]


def size_table(runs, datasets) -> list[dict]:
    sizes = {_base(r): _num(r.get("model_size_b")) for r in runs if r["method"] not in TEACHER_METHODS}
    trained = _trained(runs)
    return [_row({"model": s, "size_b": sizes.get(s), "method": m, "dataset": d},
                 _find(trained, method=m, base=s, dataset=d))
            for s in _students(runs) for m in ("vanilla-kd", "steper") for d in datasets]


def ood_table(runs, datasets) -> list[dict]:
    trained = [r for r in runs if r["method"] not in (*TEACHER_METHODS, "base") and r.get("trained_on")]
    sources = sorted({r["trained_on"] for r in trained}, key=lambda d: (d not in DATASETS, DATASETS.index(d)
                                                                        if d in DATASETS else 0, d))
    rows = []
    for s in _students(runs):
        for m in sorted({r["method"] for r in trained}):
            for src in sources:
                for d in datasets:
                    r = _find(trained, method=m, base=s, trained_on=src, dataset=d)
                    rows.append(_row({"method": m, "model": s, "trained_on": src, "dataset": d,
                                      "in_domain": src == d}, r))
    return rows


def data_table(runs, datasets) -> list[dict]:
    trained = [r for r in _trained(runs) if _num(r.get("train_questions")) is not None]
    return [_row({"method": r["method"], "model": _base(r), "train_questions": int(r["train_questions"]),
                  "dataset": r["dataset"]}, r)
            for r in sorted(trained, key=lambda r: (r["method"], _base(r), r["train_questions"], r["dataset"]))]


def latency_table(runs, datasets) -> list[dict]:
    return [_row({"method": r["method"], "model": r["model"], "framework": r["framework"], "dataset": r["dataset"]},
                 r, ("latency_s", "steps_used"))
            for r in sorted(runs, key=lambda r: (r["dataset"], str(r["method"]), str(r["model"])))]


BUILDERS = {"main": main_table, "baselines": baselines_table, "step_ablation": ablation_table,
            "weighting": weighting_table, "size_scaling": size_table, "ood": ood_table,
            "data_scaling": data_table, "latency": latency_table}


def paper_tables(con) -> dict[str, list[dict]]:
    runs = _runs(con)
    datasets = _datasets(runs)
    return {key: BUILDERS[key](runs, datasets) for key in KEYS}


# -- rendering ------------------------------------------------------------------------------------


def _fmt(key: str, v) -> str:
    if v is None:
        return "–"
    if key.endswith("_ci"):
        return f"{v[0]:.1f}–{v[1]:.1f}"
    if isinstance(v, float):
        return f"{v:.2f}" if key in ("latency_s", "steps_used") or key.startswith("judge_") else f"{v:.1f}"
    if isinstance(v, bool):
        return "yes" if v else ""
    return str(v)


def markdown(tables: dict[str, list[dict]]) -> str:
    """One Markdown section per table; missing cells print as '–' with 'missing' in the last column."""
    out = []
    for key in KEYS:
        rows = tables[key]
        out.append(f"## {TITLES[key]}\n")
        if not rows:
            out.append("_nothing of this kind in the results file yet_\n")
            continue
        cols = [c for c in rows[0] if c not in ("run_id",)]
        cols = [c for c in cols if c != "missing"] + ["missing"]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in rows:
            out.append("| " + " | ".join(_fmt(c, r.get(c)) for c in cols) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def csv_text(rows: list[dict]) -> str:
    import csv
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    return buf.getvalue()

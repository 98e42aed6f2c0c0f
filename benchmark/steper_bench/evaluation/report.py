"""The leaderboard in the paper's layout as Markdown: rows = method / model / teacher, columns =
EM / F1 / Acc per dataset, then their average over the datasets a row has; the framework
(IRCoT, Self-Ask, single-step, no-retrieval) is part of a row's identity. Values are
percentages.

The table itself is the leaderboard app's (`leaderboard_app.queries.system_table`: one row per
system = method, model, teacher; the latest finished run per system and dataset counts); this
module only renders it. `steper-bench report` prints it unfiltered, the app's Markdown export
with the page's filters. Reads only `runs` and `metrics` (O(runs), whatever the number of samples).
"""

from __future__ import annotations

DATASETS = ("hotpotqa", "2wikimultihopqa", "musique")
DATASET_LABELS = {"hotpotqa": "HotpotQA", "2wikimultihopqa": "2Wiki", "musique": "MuSiQue"}
METHOD_ORDER = ("teacher", "silver", "base", "vanilla-kd", "steper-first", "steper-first-mid", "steper")


def leaderboard_markdown(con, filters=None) -> str:
    """The Markdown table of the finished runs passing `filters` (a queries.Filters; None: all)."""
    from steper_bench.leaderboard_app import queries

    runs = queries.run_metrics(con, filters or queries.Filters())
    if runs.empty:
        return "_No finished runs in this results file yet: run `steper-bench eval`._\n"
    present = set(runs["dataset"])
    datasets = [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))
    return render_markdown(queries.system_table(runs, datasets), datasets)


def render_markdown(systems, datasets: list[str]) -> str:
    """`systems` is a queries.system_table frame; rows in the paper's order (size, then method)."""
    import pandas as pd

    from steper_bench.leaderboard_app.queries import ANSWER_METRICS, METRIC_LABELS

    labels = [METRIC_LABELS[m] for m in ANSWER_METRICS]
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    rows = sorted(
        (r for _, r in systems.iterrows()),
        key=lambda r: (0 if pd.isna(r["size (B)"]) else r["size (B)"], order.get(r["method"], 99), r["model"],
                       str(r["teacher"])),
    )
    head = ["Method", "Model", "Teacher", "Framework"]
    for d in datasets:
        head += [f"{DATASET_LABELS.get(d, d)} {label}" for label in labels]
    head += [f"Average {label}" for label in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    for r in rows:
        cells = [r["method"], r["model"], "" if pd.isna(r["teacher"]) else str(r["teacher"]), str(r["framework"])]
        cells += [_cell(r[f"{d} {label}"]) for d in datasets for label in labels]
        cells += [_cell(r[f"avg {label}"]) for label in labels]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    return "–" if v is None or v != v else f"{v:.1f}"  # v != v: NaN (no run on that dataset)

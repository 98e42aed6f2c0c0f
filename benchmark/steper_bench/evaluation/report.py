"""The leaderboard in the paper's layout: rows = method / model, columns = EM / F1 / Acc per
dataset, then their average over the datasets a row has. Values are percentages.

Reads only `runs` and `metrics` (O(runs), whatever the number of samples). When a (method,
model, dataset) was evaluated more than once (different recipes or limits), the most recently
finished run is shown. Shared by `steper-bench report` and the Streamlit app's export.
"""

from __future__ import annotations

DATASETS = ("hotpotqa", "2wikimultihopqa", "musique")
DATASET_LABELS = {"hotpotqa": "HotpotQA", "2wikimultihopqa": "2Wiki", "musique": "MuSiQue"}
SCORES = ("em", "f1", "acc")
METHOD_ORDER = ("teacher", "silver", "base", "vanilla-kd", "steper-uniform", "steper")


def leaderboard_rows(con) -> tuple[list[str], list[dict]]:
    """(datasets present, rows) with rows = {method, model, size_b, <dataset>: {em, f1, acc}}."""
    runs = con.execute(
        """
        SELECT r.method, r.model, r.model_size_b, r.dataset, m.metric, m.mean
        FROM (SELECT *, row_number() OVER (PARTITION BY method, model, dataset
                                           ORDER BY finished_at DESC NULLS LAST) AS k
              FROM runs WHERE status = 'finished') r
        JOIN metrics m ON m.run_id = r.run_id
        WHERE r.k = 1 AND m.metric IN ('em', 'f1', 'acc')
        """
    ).fetchall()
    rows: dict[tuple, dict] = {}
    present: set[str] = set()
    for method, model, size, dataset, metric, mean in runs:
        row = rows.setdefault((method, model), {"method": method, "model": model, "size_b": size})
        row.setdefault(dataset, {})[metric] = mean
        present.add(dataset)
    datasets = [d for d in DATASETS if d in present] + sorted(present - set(DATASETS))
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    ordered = sorted(rows.values(), key=lambda r: (r["size_b"] or 0, order.get(r["method"], 99), r["model"]))
    return datasets, ordered


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def leaderboard_markdown(con) -> str:
    datasets, rows = leaderboard_rows(con)
    if not rows:
        return "_No finished runs in this results file yet: run `steper-bench eval`._\n"
    head = ["Method", "Model"]
    for d in [*datasets, "average"]:
        label = DATASET_LABELS.get(d, d) if d != "average" else "Average"
        head += [f"{label} {s.upper() if s != 'acc' else 'Acc'}" for s in SCORES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r["method"], r["model"]]
        for d in datasets:
            cells += [_cell(r.get(d, {}).get(s)) for s in SCORES]
        for s in SCORES:
            vals = [r[d][s] for d in datasets if s in r.get(d, {})]
            cells.append(_cell(sum(vals) / len(vals) if vals else None))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

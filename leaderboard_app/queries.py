"""Read-only queries behind the leaderboard page.

Every function takes an open DuckDB connection and returns a pandas DataFrame (or plain data).
Widget values only ever reach SQL as bound parameters ($name): no SQL is built from them.
The main table and charts read the precomputed `metrics` table (O(runs)); only the sample
explorer touches per-question rows, and always by (run_id, question_id) or with a LIMIT.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from steper_bench.evaluation.store import ABILITIES

ANSWER_METRICS = ("em", "f1", "acc")
METRIC_LABELS = {"em": "EM", "f1": "F1", "acc": "Acc"}
JUDGE_METRICS = tuple(f"judge_{a}" for a in ABILITIES)
EXTRA_METRICS = ("steps_used", "latency_s", "sp_recall", "answer_in_retrieval")
# The columns that identify one system (a row of the paper's table; the report's Markdown,
# steper_bench.evaluation.report, renders this same table). The latest finished run per system
# and dataset counts.
SYSTEM_KEY = ["method", "model", "teacher", "framework"]
NO_SIZE = "n/a"


@dataclass(frozen=True)
class Filters:
    """Empty tuples mean 'no filter'. Sizes are labels from `size_label` (NO_SIZE for unknown)."""

    datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    include_failed: bool = False  # runs whose every question failed: hidden unless asked for

    def params(self) -> dict:
        known = [float(s[:-1]) for s in self.sizes if s != NO_SIZE]
        return {
            "datasets": list(self.datasets),
            "methods": list(self.methods),
            "families": list(self.families),
            "sizes": known,
            "any_size": not self.sizes,
            "no_size": NO_SIZE in self.sizes,
            "include_failed": self.include_failed,
        }


# Finished runs passing the filters; the filter lists arrive as bound list parameters.
_RUN_FILTER = """
    (r.status = 'finished' OR ($include_failed AND r.status = 'failed'))
    AND (len($datasets) = 0 OR list_contains($datasets, r.dataset))
    AND (len($methods) = 0 OR list_contains($methods, r.method))
    AND (len($families) = 0 OR list_contains($families, coalesce(nullif(r.model_family, ''), 'unknown')))
    AND ($any_size OR list_contains($sizes, r.model_size_b) OR ($no_size AND r.model_size_b IS NULL))
"""


def resolve_db_path(argv: list[str], environ: dict | os._Environ = os.environ) -> Path | None:
    """`--db PATH` after streamlit's `--`, else STEPER_DB, else None."""
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser()
        if arg.startswith("--db="):
            return Path(arg.split("=", 1)[1]).expanduser()
    env = environ.get("STEPER_DB", "").strip()
    return Path(env).expanduser() if env else None


def db_stamp(path: Path) -> tuple[int, int]:
    """Cache key part: changes whenever the file (or its write-ahead log) changes."""
    wal = Path(f"{path}.wal")
    return path.stat().st_mtime_ns, wal.stat().st_mtime_ns if wal.exists() else 0


def size_label(size_b: float | None) -> str:
    if size_b is None or pd.isna(size_b):
        return NO_SIZE
    return f"{size_b:g}B"


def filter_options(con) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT DISTINCT dataset, method, coalesce(nullif(model_family, ''), 'unknown'), model_size_b FROM runs "
        "WHERE status = 'finished'"
    ).fetchall()
    sizes = sorted({r[3] for r in rows if r[3] is not None})
    return {
        "datasets": sorted({r[0] for r in rows if r[0]}),
        "methods": sorted({r[1] for r in rows if r[1]}),
        "families": sorted({r[2] for r in rows}),
        "sizes": [size_label(s) for s in sizes] + ([NO_SIZE] if any(r[3] is None for r in rows) else []),
    }


def run_metrics(con, filters: Filters) -> pd.DataFrame:
    """One row per finished run passing the filters: identity columns plus, per metric,
    `<metric>`, `<metric>_lo`, `<metric>_hi` (raw scale: answers in [0, 1], judge 1-5)."""
    runs = con.execute(
        f"""SELECT r.run_id, r.model, r.model_revision, r.model_family, r.model_size_b, r.method,
                   r.teacher, r.dataset, r.dataset_revision, r.recipe_name, r.recipe_hash, r.split,
                   r.n, r.backend, coalesce(r.framework, 'ircot') AS framework, r.few_shot,
                   r.trained_on, r.train_questions, r.method_spec,
                   coalesce(r.finished_at, r.started_at) AS finished_at
            FROM runs r WHERE {_RUN_FILTER} ORDER BY r.run_id""",
        filters.params(),
    ).df()
    wanted = list(ANSWER_METRICS + JUDGE_METRICS + EXTRA_METRICS)
    metrics = con.execute(
        f"""SELECT m.run_id, m.metric, m.mean, m.ci_low, m.ci_high FROM metrics m
            JOIN runs r USING (run_id)
            WHERE {_RUN_FILTER} AND list_contains($wanted, m.metric)""",
        {**filters.params(), "wanted": wanted},
    ).df()
    wide = metrics.pivot(index="run_id", columns="metric", values=["mean", "ci_low", "ci_high"])
    out = pd.DataFrame(index=wide.index)
    for m in wanted:
        for part, suffix in (("mean", ""), ("ci_low", "_lo"), ("ci_high", "_hi")):
            out[m + suffix] = wide[(part, m)] if (part, m) in wide.columns else float("nan")
    return runs.merge(out, left_on="run_id", right_index=True, how="left")


def latest_per_dataset(runs: pd.DataFrame) -> pd.DataFrame:
    """Keep the latest finished run per (system, dataset): re-evaluations replace older ones."""
    if runs.empty:
        return runs
    ordered = runs.sort_values("finished_at", na_position="first")
    return ordered.drop_duplicates([*SYSTEM_KEY, "dataset"], keep="last")  # NaN keys compare equal here


def system_table(runs: pd.DataFrame, datasets: list[str], with_ci: bool = False) -> pd.DataFrame:
    """The paper's layout: one row per system, EM/F1/Acc per dataset (x100) and their average
    over the datasets the system has, judge scores per ability, mean steps and latency."""
    runs = latest_per_dataset(runs)
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for _, grp in runs.groupby(SYSTEM_KEY, dropna=False, sort=False):
        first = grp.sort_values("finished_at", na_position="first").iloc[-1]
        row = {
            "model": first["model"],
            "method": first["method"],
            "size (B)": first["model_size_b"],
            "teacher": first["teacher"],
            "framework": first["framework"],
            "family": first["model_family"],
        }
        by_ds = {r["dataset"]: r for _, r in grp.iterrows()}
        for ds in datasets:
            r = by_ds.get(ds)
            for m in ANSWER_METRICS:
                col = f"{ds} {METRIC_LABELS[m]}"
                row[col] = 100 * r[m] if r is not None else float("nan")
                if with_ci:
                    row[col + " 95% CI"] = _ci_text(r, m) if r is not None else ""
        for m in ANSWER_METRICS:
            row[f"avg {METRIC_LABELS[m]}"] = 100 * grp[m].mean()
        for a in ABILITIES:
            row[f"judge {a}"] = grp[f"judge_{a}"].mean()
        row["steps"] = grp["steps_used"].mean()
        row["latency (s)"] = grp["latency_s"].mean()
        row["dataset revision"] = _joined(grp, "dataset_revision")
        row["recipe hash"] = _joined(grp, "recipe_hash")
        row["runs"] = " ".join(grp.sort_values("dataset")["run_id"])
        rows.append(row)
    return pd.DataFrame(rows).sort_values("avg Acc", ascending=False, na_position="last").reset_index(drop=True)


def run_table(runs: pd.DataFrame, with_ci: bool = False) -> pd.DataFrame:
    """One row per evaluated run (no cross-dataset pivot)."""
    if runs.empty:
        return pd.DataFrame()
    out = pd.DataFrame(
        {
            "model": runs["model"],
            "method": runs["method"],
            "size (B)": runs["model_size_b"],
            "teacher": runs["teacher"],
            "framework": runs["framework"],
            "dataset": runs["dataset"],
            "dataset revision": runs["dataset_revision"],
            "recipe hash": runs["recipe_hash"],
            "n": runs["n"],
        }
    )
    for m in ANSWER_METRICS:
        out[METRIC_LABELS[m]] = 100 * runs[m]
        if with_ci:
            out[METRIC_LABELS[m] + " 95% CI"] = [_ci_text(r, m) for _, r in runs.iterrows()]
    for a in ABILITIES:
        out[f"judge {a}"] = runs[f"judge_{a}"]
    out["steps"] = runs["steps_used"]
    out["latency (s)"] = runs["latency_s"]
    out["run"] = runs["run_id"]
    return out.sort_values("Acc", ascending=False, na_position="last").reset_index(drop=True)


def _ci_text(r, m: str) -> str:
    lo, hi = r[f"{m}_lo"], r[f"{m}_hi"]
    if pd.isna(lo) or pd.isna(hi):
        return ""
    return f"{100 * lo:.1f}–{100 * hi:.1f}"


def _joined(grp: pd.DataFrame, col: str) -> str:
    parts = [f"{r['dataset']}@{r[col]}" for _, r in grp.sort_values("dataset").iterrows() if r[col]]
    return ", ".join(parts)


def ability_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form (method, ability, score) averaged over the runs the table counts."""
    runs = latest_per_dataset(runs)
    cols = [f"judge_{a}" for a in ABILITIES]
    if runs.empty or runs[cols].isna().all().all():
        return pd.DataFrame(columns=["method", "ability", "score"])
    long = runs.melt(id_vars=["method"], value_vars=cols, var_name="ability", value_name="score").dropna()
    long["ability"] = long["ability"].str.removeprefix("judge_")
    return long.groupby(["method", "ability"], as_index=False)["score"].mean()


def sigma_history(con, filters: Filters) -> pd.DataFrame:
    """Learned sigma (not log sigma) per step kind over training steps, for the shown runs
    that stored it (StepER students with the learned weighting)."""
    return con.execute(
        f"""SELECT r.model || ' · ' || r.method || ' · ' || r.dataset || ' · ' || left(r.run_id, 8) AS run,
                   s.run_id, s.step,
                   s.kind, s.sigma
            FROM sigma_history s JOIN runs r USING (run_id)
            WHERE {_RUN_FILTER} ORDER BY s.run_id, s.kind, s.step""",
        filters.params(),
    ).df()


# -- sample explorer ----------------------------------------------------------------------------


def run_label(r) -> str:
    size = f" {size_label(r['model_size_b'])}" if not pd.isna(r["model_size_b"]) else ""
    return f"{r['model']}{size} · {r['method']} · {r['dataset']} · {str(r['run_id'])[:8]}"


def questions(con, run_id: str, search: str = "", only_wrong: bool = False, limit: int = 200) -> pd.DataFrame:
    """The run's questions for the picker, wrong answers first when asked (bounded by limit)."""
    return con.execute(
        """SELECT question_id, question, acc FROM samples
           WHERE run_id = $run AND ($search = '' OR contains(lower(question), lower($search))
                                    OR question_id = $search)
             AND (NOT $wrong OR acc < 1)
           ORDER BY question_id LIMIT $limit""",
        {"run": run_id, "search": search.strip(), "wrong": only_wrong, "limit": limit},
    ).df()


def failure_breakdown(con, run_id: str) -> pd.DataFrame:
    """Why answers are wrong: was the gold answer ever retrieved, and how the loop stopped."""
    return con.execute(
        """SELECT CASE WHEN acc >= 1 THEN 'correct'
                       WHEN answer_in_retrieval > 0 THEN 'wrong: answer was retrieved (reasoning)'
                       WHEN answer_in_retrieval = 0 THEN 'wrong: answer never retrieved (retrieval)'
                       ELSE 'wrong: retrieval unknown' END AS outcome,
                  stop_reason, count(*) AS questions
           FROM samples WHERE run_id = $run GROUP BY ALL ORDER BY outcome, stop_reason""",
        {"run": run_id},
    ).df()


@dataclass
class SampleView:
    sample: dict
    steps: list[dict]
    paragraphs: dict[str, dict]
    judgments: pd.DataFrame


def sample_view(con, run_id: str, question_id: str) -> SampleView | None:
    key = {"run": run_id, "q": question_id}
    sample = con.execute(
        "SELECT * FROM samples WHERE run_id = $run AND question_id = $q", key
    ).df()
    if sample.empty:
        return None
    steps = con.execute(
        "SELECT * FROM steps WHERE run_id = $run AND question_id = $q ORDER BY step", key
    ).df()
    paras = con.execute(
        "SELECT pid, title, text, is_supporting FROM paragraphs WHERE run_id = $run AND question_id = $q",
        key,
    ).df()
    judg = con.execute(
        """SELECT ability, step, judge_model, score, rationale, status, error FROM judgments
           WHERE run_id = $run AND question_id = $q ORDER BY step, ability""",
        key,
    ).df()
    return SampleView(
        sample=sample.iloc[0].to_dict(),
        steps=steps.to_dict("records"),
        paragraphs={p["pid"]: p for p in paras.to_dict("records")},
        judgments=judg,
    )


def launch_command(
    app_file: Path, db: Path, port: int | None = None, headless: bool = False, address: str | None = None
) -> list[str]:
    """The `streamlit run` argv for `steper-bench leaderboard` (kept here so tests reuse it)."""
    import sys

    cmd = [sys.executable, "-m", "streamlit", "run", str(app_file), "--browser.gatherUsageStats", "false"]
    if port:
        cmd += ["--server.port", str(port)]
    if headless:
        cmd += ["--server.headless", "true"]
    if address:
        cmd += ["--server.address", address]
    return cmd + ["--", "--db", str(db)]


def shell_line(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)

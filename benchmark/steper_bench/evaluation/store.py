"""The results store: one DuckDB file (default `results.duckdb`) shared by eval, judge, report
and the Streamlit leaderboard (which opens it read-only). All DDL lives here.

Schema v2 (names and columns are a contract with the leaderboard; change SCHEMA_VERSION when
they change; v1 files are upgraded in place by the first writer: v2 only adds `runs` columns):

- `schema_version(version)`: one row, checked on open.
- `runs`: one row per evaluated (recipe eval settings, model, split, limit). `run_id` is a
  deterministic hash of those, so re-running the same eval replaces the run's rows.
  Columns: run_id PK, recipe_name, recipe_hash, eval_hash, model, model_revision (the Hub
  revision; `train:<train hash>` for a trained student, `files:<fingerprint>` of the weight files
  for another local folder), model_family, model_size_b (from names like 8B / 0.5B, or counted parameters of a local model), backend,
  method (a training method's name: vanilla-kd | steper-first | steper-first-mid | steper | an
  inline method's name; or teacher | silver | base for untrained rows), teacher, dataset,
  dataset_revision, split, n, versions JSON (library versions), git_commit, seeds JSON,
  started_at, finished_at, status (running | finished | failed); v2: framework (ircot |
  self-ask | single-step | no-retrieval | ...), few_shot (demonstrations shown), trained_on
  (the dataset a trained student's step-wise data came from), train_build (that data's build
  hash), train_questions (training questions sampled, NULL = all), method_spec JSON (step kinds,
  weighting, fixed weights).
- `samples`: one row per question: gold JSON (answer list), prediction, em / f1 / acc,
  steps_used, stop_reason (answered | max_steps | empty | failed), latency_s, tokens, sp_recall (gold
  supporting paragraphs among the final context), answer_in_retrieval (0/1).
- `steps`: one row per reasoning step: query, retrieved / new / context pids (JSON lists),
  reasoning, latency_s, tokens, sp_recall after the step, error.
- `paragraphs`: every paragraph a run's question saw, with is_supporting for that question.
- `judgments`: LLM-judge scores per (run, question, ability, step, judge_model,
  rubric_version); ability initialization | expansion | aggregation; score 1-5 or NULL with
  status 'failed' and the error (failures are kept and counted, never scored as zero).
- `pairwise`: judge verdicts comparing two runs on the same question per ability, asked in
  both orders; verdict a | b | tie (inconsistent orders count as a tie, failures as failed).
- `sigma_history`: the learned sigma (not log sigma; starts near 1.0) per step kind over
  training steps, copied from a `steper` student's weights.json (learned weighting only).
- `metrics`: a TABLE (not a view) precomputed at write time: per run and metric (em, f1, acc,
  steps_used, latency_s, sp_recall, answer_in_retrieval, judge_<ability>), mean with a 95%
  percentile bootstrap interval (1000 resamples, fixed seed). A view could not hold the
  bootstrap intervals cheaply; precomputing keeps reading a leaderboard O(runs). Writers
  refresh a run's rows (`write_run`, `write_judgments`), so never edit samples directly.

Writers hold the file only for one short transaction; DuckDB allows one writing process at a
time, so `connect` retries with backoff until the other writer is done.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from steper_bench.evaluation.abilities import NAMES as ABILITIES  # noqa: F401  (re-exported: one table)


SCHEMA_VERSION = 2
# Columns each version added to `runs` (name, type): applied in order by `_upgrade`.
RUN_COLUMNS_ADDED = {2: [("framework", "VARCHAR"), ("few_shot", "INTEGER"), ("trained_on", "VARCHAR"),
                         ("train_build", "VARCHAR"), ("train_questions", "INTEGER"), ("method_spec", "JSON")]}
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
SAMPLE_METRICS = ("em", "f1", "acc", "steps_used", "latency_s", "tokens", "sp_recall", "answer_in_retrieval")

DDL = [
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, recipe_name VARCHAR, recipe_hash VARCHAR, eval_hash VARCHAR,
        model VARCHAR, model_revision VARCHAR, model_family VARCHAR, model_size_b DOUBLE,
        backend VARCHAR, method VARCHAR, teacher VARCHAR, dataset VARCHAR,
        dataset_revision VARCHAR, split VARCHAR, n INTEGER, versions JSON, git_commit VARCHAR,
        seeds JSON, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
        framework VARCHAR, few_shot INTEGER, trained_on VARCHAR, train_build VARCHAR,
        train_questions INTEGER, method_spec JSON)""",
    """CREATE TABLE IF NOT EXISTS samples (
        run_id VARCHAR, question_id VARCHAR, question VARCHAR, type VARCHAR, gold JSON,
        prediction VARCHAR, em DOUBLE, f1 DOUBLE, acc DOUBLE, steps_used INTEGER,
        stop_reason VARCHAR, latency_s DOUBLE, tokens INTEGER, sp_recall DOUBLE,
        answer_in_retrieval DOUBLE, PRIMARY KEY (run_id, question_id))""",
    """CREATE TABLE IF NOT EXISTS steps (
        run_id VARCHAR, question_id VARCHAR, step INTEGER, query VARCHAR, retrieved_pids JSON,
        new_pids JSON, context_pids JSON, reasoning VARCHAR, latency_s DOUBLE, tokens INTEGER,
        sp_recall DOUBLE, error VARCHAR, PRIMARY KEY (run_id, question_id, step))""",
    """CREATE TABLE IF NOT EXISTS paragraphs (
        run_id VARCHAR, question_id VARCHAR, pid VARCHAR, title VARCHAR, text VARCHAR,
        is_supporting BOOLEAN, PRIMARY KEY (run_id, question_id, pid))""",
    """CREATE TABLE IF NOT EXISTS judgments (
        run_id VARCHAR, question_id VARCHAR, ability VARCHAR, step INTEGER, judge_model VARCHAR,
        rubric_version VARCHAR, score INTEGER, rationale VARCHAR, status VARCHAR, error VARCHAR,
        created_at TIMESTAMP,
        PRIMARY KEY (run_id, question_id, ability, step, judge_model, rubric_version))""",
    """CREATE TABLE IF NOT EXISTS pairwise (
        run_a VARCHAR, run_b VARCHAR, question_id VARCHAR, ability VARCHAR, judge_model VARCHAR,
        rubric_version VARCHAR, verdict VARCHAR, verdict_ab VARCHAR, verdict_ba VARCHAR,
        rationale_ab VARCHAR, rationale_ba VARCHAR, status VARCHAR, error VARCHAR,
        created_at TIMESTAMP,
        PRIMARY KEY (run_a, run_b, question_id, ability, judge_model, rubric_version))""",
    """CREATE TABLE IF NOT EXISTS sigma_history (
        run_id VARCHAR, step INTEGER, kind VARCHAR, sigma DOUBLE,
        PRIMARY KEY (run_id, step, kind))""",
    """CREATE TABLE IF NOT EXISTS metrics (
        run_id VARCHAR, metric VARCHAR, mean DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n INTEGER,
        PRIMARY KEY (run_id, metric))""",
]
TABLES = ("runs", "samples", "steps", "paragraphs", "judgments", "pairwise", "sigma_history", "metrics")
RUN_TABLES = ("samples", "steps", "paragraphs", "judgments", "sigma_history", "metrics")


class StoreError(RuntimeError):
    """A results-file problem a user can act on."""


def utcnow() -> dt.datetime:
    """A timestamp for the TIMESTAMP columns: UTC, naive (DuckDB stores no zone)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _damaged(path: Path, e: Exception) -> StoreError:
    return StoreError(
        f"the results file {path} is damaged ({str(e).splitlines()[0][:160]}): nothing was written to it. Move it "
        "aside (or restore a copy) and re-run the evals into a new file: the request cache makes that cheap"
    )


def _is_corruption(e: Exception) -> bool:
    text = str(e).lower()
    return any(w in text for w in ("corrupt", "checksum", "not a valid duckdb", "invalid database"))


# Files read whole once in this process (path, size, mtime): a damaged block anywhere is found
# before anything reads or writes it, without rescanning on every connection.
_VERIFIED: set[tuple[str, int, int]] = set()


def verify(con, path: Path) -> None:
    """Read every stored value once (a hash over each table's rows), so that a damaged block is
    a clear StoreError here rather than a checksum traceback, or worse a write, later."""
    stat = path.stat()
    stamp = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if stamp in _VERIFIED:
        return
    for table in TABLES:
        con.execute(f"SELECT count(*), sum(hash(t)) FROM {table} t").fetchone()
    _VERIFIED.add(stamp)


def connect(path: str | Path, *, read_only: bool = False, wait_s: float = 300.0, check: bool = True):
    """Open (creating when writable) the results file, waiting while another process writes it,
    and check its schema version and (`check`, once per file state) that it is not damaged."""
    import duckdb

    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"{path}: no results file here; run `steper-bench eval` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline, delay = time.monotonic() + wait_s, 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=dict(DUCKDB_CONFIG))
            break
        except duckdb.IOException as e:  # another process holds the write lock
            if "lock" not in str(e).lower() or time.monotonic() > deadline:
                raise StoreError(f"{path}: cannot open the results file ({e})") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        except duckdb.Error as e:
            raise (_damaged(path, e) if _is_corruption(e) else StoreError(f"{path}: cannot open the results file ({e})")) \
                from None
    try:
        _check_or_create(con, path, read_only)
        if check:
            verify(con, path)
    except duckdb.Error as e:
        con.close()
        if _is_corruption(e):
            raise _damaged(path, e) from None
        raise
    except BaseException:
        con.close()
        raise
    return con


def _check_or_create(con, path: Path, read_only: bool) -> None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "schema_version" in tables:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        found = row[0] if row and row[0] is not None else 0
    else:
        found = 0 if tables & set(TABLES) else None
    if found is None:  # empty file: create the schema
        if read_only:
            raise StoreError(f"{path}: empty results file; run `steper-bench eval` first")
        con.execute("BEGIN")
        for stmt in DDL:
            con.execute(stmt)
        con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
        return
    if 0 < found < SCHEMA_VERSION and not read_only:
        _upgrade(con, found)
        return
    if 0 < found < SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by an older steper-bench (schema v{found}, now v{SCHEMA_VERSION}): any writing "
            "command (steper-bench eval or judge on it) upgrades it in place; nothing is lost"
        )
    if found != SCHEMA_VERSION:
        raise StoreError(
            f"{path.name} has schema v{found}, this steper-bench writes v{SCHEMA_VERSION}: "
            f"write to a new file (--db other.duckdb) or move {path} aside and re-run the evals"
        )


def _upgrade(con, found: int) -> None:
    """Additive upgrades, in one transaction: the new `runs` columns, then the version."""
    con.execute("BEGIN")
    try:
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for name, kind in RUN_COLUMNS_ADDED.get(version, []):
                con.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {name} {kind}")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# -- writing ------------------------------------------------------------------------------------


def _arrow(rows: list[dict], columns: Sequence[str]):
    import pyarrow as pa

    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]) if rows else None


def _insert(con, table: str, rows: list[dict], columns: Sequence[str], json_cols: Iterable[str] = ()) -> None:
    if not rows:
        return
    json_cols = set(json_cols)
    rows = [{c: (json.dumps(r.get(c)) if c in json_cols else r.get(c)) for c in columns} for r in rows]
    tbl = _arrow(rows, columns)
    name = f"_steper_{table}"
    con.register(name, tbl)
    try:
        cols = ", ".join(columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}")
    finally:
        con.unregister(name)


RUN_COLS = (
    "run_id recipe_name recipe_hash eval_hash model model_revision model_family model_size_b backend method "
    "teacher dataset dataset_revision split n versions git_commit seeds started_at finished_at status "
    "framework few_shot trained_on train_build train_questions method_spec"
).split()
SAMPLE_COLS = (
    "run_id question_id question type gold prediction em f1 acc steps_used stop_reason latency_s tokens "
    "sp_recall answer_in_retrieval"
).split()
STEP_COLS = (
    "run_id question_id step query retrieved_pids new_pids context_pids reasoning latency_s tokens sp_recall error"
).split()
PARAGRAPH_COLS = "run_id question_id pid title text is_supporting".split()
JUDGMENT_COLS = (
    "run_id question_id ability step judge_model rubric_version score rationale status error created_at"
).split()
PAIRWISE_COLS = (
    "run_a run_b question_id ability judge_model rubric_version verdict verdict_ab verdict_ba rationale_ab "
    "rationale_ba status error created_at"
).split()
SIGMA_COLS = "run_id step kind sigma".split()
METRIC_COLS = "run_id metric mean ci_low ci_high n".split()


def write_run(
    con,
    run: dict,
    samples: list[dict],
    steps: list[dict],
    paragraphs: list[dict],
    sigma: list[dict] | None = None,
) -> dict[str, dict]:
    """Replace everything stored for run['run_id'] with these rows, in one transaction, and
    compute its metrics. Returns the metrics written ({metric: {mean, ci_low, ci_high, n}})."""
    run_id = run["run_id"]
    metrics = sample_metrics(samples)
    con.execute("BEGIN")
    try:
        _delete_run(con, run_id)
        _insert(con, "runs", [run], RUN_COLS, json_cols=("versions", "seeds", "method_spec"))
        _insert(con, "samples", samples, SAMPLE_COLS, json_cols=("gold",))
        _insert(con, "steps", steps, STEP_COLS, json_cols=("retrieved_pids", "new_pids", "context_pids"))
        _insert(con, "paragraphs", paragraphs, PARAGRAPH_COLS)
        _insert(con, "sigma_history", sigma or [], SIGMA_COLS)
        _insert(con, "metrics", _metric_rows(run_id, metrics), METRIC_COLS)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return metrics


def _delete_run(con, run_id: str) -> None:
    for table in RUN_TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    con.execute("DELETE FROM pairwise WHERE run_a = ? OR run_b = ?", [run_id, run_id])
    con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])


def write_judgments(con, rows: list[dict]) -> None:
    """Upsert judgments (same key = same judge, rubric and step: replaced), then refresh the
    judge metrics of the runs touched, in one transaction."""
    if not rows:
        return
    con.execute("BEGIN")
    try:
        _replace(con, "judgments", rows, JUDGMENT_COLS, JUDGMENT_COLS[:4] + ["judge_model", "rubric_version"])
        for run_id in sorted({r["run_id"] for r in rows}):
            judge_model, version = rows[0]["judge_model"], rows[0]["rubric_version"]
            _refresh_judge_metrics(con, run_id, judge_model, version)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def write_pairwise(con, rows: list[dict]) -> None:
    if not rows:
        return
    con.execute("BEGIN")
    try:
        _replace(con, "pairwise", rows, PAIRWISE_COLS, PAIRWISE_COLS[:6])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _replace(con, table: str, rows: list[dict], columns: Sequence[str], key: Sequence[str]) -> None:
    """Delete the rows with these keys (one statement), then insert them."""
    name = f"_steper_keys_{table}"
    con.register(name, _arrow(rows, key))
    try:
        cols = ", ".join(key)
        con.execute(f"DELETE FROM {table} WHERE ({cols}) IN (SELECT ({cols}) FROM {name})")
    finally:
        con.unregister(name)
    _insert(con, table, rows, columns)


def _refresh_judge_metrics(con, run_id: str, judge_model: str, version: str) -> None:
    """judge_<ability>: mean score per question (expansion averages its middle steps first),
    bootstrapped over questions; judge_failed: the share of failed judgments."""
    rows = con.execute(
        "SELECT ability, question_id, avg(score) FROM judgments WHERE run_id=? AND judge_model=? "
        "AND rubric_version=? AND status='ok' GROUP BY ability, question_id ORDER BY ability, question_id",
        [run_id, judge_model, version],
    ).fetchall()
    per: dict[str, list[float]] = {}
    for ability, _, s in rows:
        per.setdefault(ability, []).append(float(s))
    failed = con.execute(
        "SELECT avg(CASE WHEN status='failed' THEN 1.0 ELSE 0.0 END), count(*) FROM judgments "
        "WHERE run_id=? AND judge_model=? AND rubric_version=?",
        [run_id, judge_model, version],
    ).fetchone()
    con.execute("DELETE FROM metrics WHERE run_id=? AND metric LIKE 'judge\\_%' ESCAPE '\\'", [run_id])
    out = {f"judge_{a}": bootstrap_mean(np.array(v)) for a, v in per.items()}
    if failed and failed[1]:
        out["judge_failed"] = {"mean": float(failed[0]), "ci_low": None, "ci_high": None, "n": int(failed[1])}
    _insert(con, "metrics", _metric_rows(run_id, out), METRIC_COLS)


# -- metrics ------------------------------------------------------------------------------------


def sample_metrics(samples: list[dict]) -> dict[str, dict]:
    out = {}
    for m in SAMPLE_METRICS:
        values = np.array([s[m] for s in samples if s.get(m) is not None], dtype=np.float64)
        if values.size:
            out[m] = bootstrap_mean(values)
    return out


def bootstrap_mean(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """Mean and 95% percentile bootstrap interval.

    A resample's mean depends only on how often each distinct value is drawn, and those counts
    are Multinomial(n, frequency / n): drawing them costs O(resamples x distinct values), not
    O(resamples x n), and is exactly the usual bootstrap. Continuous columns with more than
    4096 distinct values (latency over huge runs) are first binned into 4096 quantile bins
    (bin means), an approximation far below the interval's own Monte-Carlo noise.
    """
    values = np.asarray(values, dtype=np.float64)
    n = int(values.size)
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": n}
    uniq, counts = np.unique(values, return_counts=True)
    if uniq.size > 4096:
        order = np.sort(values)
        bins = np.array_split(order, 4096)
        uniq = np.array([b.mean() for b in bins])
        counts = np.array([b.size for b in bins])
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=resamples)  # (resamples, distinct)
    means = draws @ uniq / n
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": mean, "ci_low": float(lo), "ci_high": float(hi), "n": n}


def _metric_rows(run_id: str, metrics: dict[str, dict]) -> list[dict]:
    return [{"run_id": run_id, "metric": m, **v} for m, v in metrics.items()]


# -- reading ------------------------------------------------------------------------------------


def finished_run(con, run_id: str) -> dict[str, Any] | None:
    row = con.execute("SELECT n, status FROM runs WHERE run_id=?", [run_id]).fetchone()
    if not row or row[1] != "finished":
        return None
    return {"n": row[0], "metrics": read_metrics(con, run_id)}


def read_metrics(con, run_id: str) -> dict[str, dict]:
    rows = con.execute("SELECT metric, mean, ci_low, ci_high, n FROM metrics WHERE run_id=?", [run_id]).fetchall()
    return {m: {"mean": a, "ci_low": lo, "ci_high": hi, "n": n} for m, a, lo, hi, n in rows}

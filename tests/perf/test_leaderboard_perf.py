"""Leaderboard render time does not grow with the number of stored samples, and no page query
reads the whole per-question tables.

The page reads the precomputed `metrics` table (O(runs)); the explorer reads one question by key
and a bounded question list of one run. The databases are written by the store itself
(`store.write_run`: its own metrics and intervals, its run layout), with run ids that are hex
digests as `make_run_id` makes them; steps and paragraphs are filled in DuckDB with range().

Checks: (1) a full AppTest render with 1M stored samples takes at most 2x the time with 1k;
(2) every query a render sends (recorded at the store's `connect`) is replayed under DuckDB's
profiler, and no table scan of samples / steps / paragraphs returns more rows than one run holds
(an aggregate over all samples, or a page that filters in pandas, returns them all); (3) the main
table shows the store's metrics.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from steper_bench.evaluation import store
from steper_bench.recipe import digest

APP = Path(__file__).resolve().parents[2] / "leaderboard_app" / "app.py"
METHODS = ("steper", "vanilla-kd", "teacher", "base")
DATASETS = ("hotpotqa", "2wikimultihopqa", "musique")
SIZES = (0.5, 1.5, 3.0, 7.0, 8.0)
N_RUNS = len(METHODS) * len(DATASETS) * len(SIZES)  # 60
PER_QUESTION = ("samples", "steps", "paragraphs", "judgments")


def _runs() -> list[dict]:
    out = []
    for i, (m, d, s) in enumerate((m, d, s) for m in METHODS for d in DATASETS for s in SIZES):
        out.append(
            {
                "run_id": digest(["perf", m, d, s]),
                "recipe_name": d,
                "recipe_hash": f"rh{i}",
                "model": f"model-{s}b-{m}",
                "model_family": "llama",
                "model_size_b": s,
                "method": m,
                "teacher": "teacher-70b",
                "dataset": d,
                "dataset_revision": "rev1",
                "split": "test",
                "started_at": f"2025-01-01 00:{i:02d}:00",
                "finished_at": f"2025-01-01 01:{i:02d}:00",
                "status": "finished",
            }
        )
    return out


def _samples(run_id: str, n: int, rng: np.random.Generator) -> list[dict]:
    acc = (rng.random(n) < 0.4).astype(float)
    f1 = np.where(acc > 0, 1.0, rng.integers(0, 5, n) / 4.0)
    return [
        {
            "run_id": run_id,
            "question_id": f"q{j:07d}",
            "question": f"Synthetic question number {j}?",
            "type": "bridge",
            "gold": ["gold"],
            "prediction": "gold" if a else "other",
            "em": a,
            "f1": f,
            "acc": a,
            "steps_used": 2,
            "stop_reason": "answered",
            "latency_s": round(float(lat), 2),
            "tokens": 40,
            "sp_recall": 0.5,
            "answer_in_retrieval": float(a),
        }
        for j, a, f, lat in zip(range(n), acc, f1, rng.random(n) * 2)
    ]


def build_db(path: Path, n_samples: int) -> None:
    """Every run through store.write_run (samples and the store's own metrics), then steps and
    paragraphs for each sample in one statement each."""
    con = store.connect(path)
    per_run = n_samples // N_RUNS
    rng = np.random.default_rng(0)
    for run in _runs():
        store.write_run(con, {**run, "n": per_run}, _samples(run["run_id"], per_run, rng), [], [])
    con.execute(
        """INSERT INTO steps (run_id, question_id, step, query, retrieved_pids, new_pids, context_pids, reasoning,
                              latency_s, tokens, sp_recall, error)
           SELECT run_id, question_id, k, 'query ' || k, '["p0", "p1"]', '["p0"]', '["p0", "p1"]',
                  'Reasoning ' || k || '.', 0.1, 20, 0.5, NULL
           FROM samples, range(1, 3) t(k)"""
    )
    con.execute(
        """INSERT INTO paragraphs (run_id, question_id, pid, title, text, is_supporting)
           SELECT run_id, question_id, 'p' || k, 'Title ' || k, 'Text ' || k, k = 0 FROM samples, range(2) t(k)"""
    )
    con.close()


@pytest.fixture(scope="module")
def dbs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("leaderboard")
    out = {"1k": folder / "1k.duckdb", "1m": folder / "1m.duckdb"}
    t0 = time.perf_counter()
    build_db(out["1k"], 1_000)
    build_db(out["1m"], 1_000_000)
    print(f"\nbuilt both databases through store.write_run in {time.perf_counter() - t0:.1f} s")
    return out


def render_once(db: Path, monkeypatch) -> AppTest:
    """One full page render with a cold query cache; the AppTest with its elapsed seconds."""
    monkeypatch.setenv("STEPER_DB", str(db))
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=120)
    t0 = time.perf_counter()
    at.run()
    at.elapsed = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) == len(METHODS) * len(SIZES)
    return at


@pytest.mark.perf
def test_render_time_independent_of_sample_count(dbs, monkeypatch):
    small, large = dbs["1k"], dbs["1m"]
    render_once(small, monkeypatch)  # warm imports
    times = {small: [], large: []}
    for _ in range(5):  # interleaved, so drift on a shared machine hits both alike
        for db in (small, large):
            times[db].append(render_once(db, monkeypatch).elapsed)
    t_small, t_large = statistics.median(times[small]), statistics.median(times[large])
    ratio = t_large / t_small
    print(
        f"render (median of 5, cold cache) 1k samples: {t_small:.3f} s, 1M samples: {t_large:.3f} s, "
        f"ratio {ratio:.2f} (goal <= 2)"
    )
    assert ratio <= 2.0


class _Recorder:
    """The store's connection as the page gets it, noting each statement it executes."""

    def __init__(self, con, log: list):
        self._con, self._log = con, log

    def execute(self, sql, parameters=None):
        self._log.append((sql, parameters))
        return self._con.execute(sql, parameters) if parameters is not None else self._con.execute(sql)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _scans(db: Path, sql: str, params, profile: Path) -> list[dict]:
    """The table scans of one statement under DuckDB's JSON profiler."""
    con = store.connect(db, read_only=True)
    try:
        con.execute("PRAGMA enable_profiling='json'")
        con.execute(f"SET profiling_output='{profile}'")
        (con.execute(sql, params) if params is not None else con.execute(sql)).fetchall()
        con.execute("PRAGMA disable_profiling")
    finally:
        con.close()
    found = []

    def walk(node):
        if node.get("type") == "TABLE_SCAN":
            found.append(
                {
                    "table": node["extra_info"].get("Table", "").rsplit(".", 1)[-1],
                    "rows_out": node.get("intermediate_rows", 0),
                    "rows_scanned": node.get("rows_scanned", 0),
                }
            )
        for child in node.get("children", []):
            walk(child)

    for root in json.loads(profile.read_text())["operator"]:
        walk(root)
    return found


def _one_run_rows(db: Path) -> dict[str, int]:
    con = store.connect(db, read_only=True)
    try:
        return {
            t: con.execute(f"SELECT coalesce(max(c), 0) FROM (SELECT count(*) c FROM {t} GROUP BY run_id)").fetchone()[
                0
            ]
            for t in PER_QUESTION
        }
    finally:
        con.close()


@pytest.mark.perf
def test_no_page_query_reads_all_samples(dbs, monkeypatch, tmp_path):
    db = dbs["1m"]
    log: list = []
    connect = store.connect
    monkeypatch.setattr(store, "connect", lambda *a, **kw: _Recorder(connect(*a, **kw), log))
    at = render_once(db, monkeypatch)
    monkeypatch.setattr(store, "connect", connect)
    assert log, "the page ran no query through the store"
    limit = _one_run_rows(db)
    touched = {}
    for i, (sql, params) in enumerate(log):
        for scan in _scans(db, sql, params, tmp_path / f"q{i}.json"):
            if scan["table"] in PER_QUESTION:
                touched.setdefault(scan["table"], []).append(scan)
                assert scan["rows_out"] <= limit[scan["table"]], (scan, sql)
    scanned = {t: sum(s["rows_scanned"] for s in v) for t, v in touched.items()}
    print(
        f"\n{len(log)} queries in one render; per-question tables read (rows returned / physically scanned): "
        + ", ".join(f"{t} {sum(s['rows_out'] for s in v):,} / {scanned[t]:,}" for t, v in touched.items())
    )
    # the main table's numbers are the store's precomputed metrics (acc of one system, in %)
    con = connect(db, read_only=True)
    try:
        run_id, acc = con.execute(
            "SELECT r.run_id, m.mean FROM runs r JOIN metrics m USING (run_id) WHERE r.method = 'steper' AND "
            "r.model_size_b = 8.0 AND r.dataset = 'hotpotqa' AND m.metric = 'acc'"
        ).fetchone()
    finally:
        con.close()
    table = at.dataframe[0].value
    row = table[(table["method"] == "steper") & (table["size (B)"] == 8.0)]
    cell = next(v for c, v in row.iloc[0].items() if "hotpotqa" in str(c).lower() and "acc" in str(c).lower())
    assert float(cell) == pytest.approx(100 * acc, abs=0.05), (run_id, row.to_dict("records"))

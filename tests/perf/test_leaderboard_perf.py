"""Leaderboard render time does not grow with the number of stored samples.

The page reads the precomputed `metrics` table (O(runs)); the explorer reads one question by key
and a bounded question list. Goal: a full AppTest render with 1M stored samples takes at most
2x the time with 1k. Synthetic rows are generated inside DuckDB with range().
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from steper_bench.evaluation import store

APP = Path(__file__).resolve().parents[2] / "leaderboard_app" / "app.py"
METHODS = ("steper", "vanilla-kd", "teacher", "base")
DATASETS = ("hotpotqa", "2wikimultihopqa", "musique")
SIZES = (0.5, 1.5, 3.0, 7.0, 8.0)
N_RUNS = len(METHODS) * len(DATASETS) * len(SIZES)  # 60


def build_db(path: Path, n_samples: int) -> None:
    con = store.connect(path)
    per_run = n_samples // N_RUNS
    con.execute("BEGIN")
    con.execute(
        """INSERT INTO runs (run_id, recipe_name, recipe_hash, model, model_family, model_size_b, method, teacher,
                             dataset, dataset_revision, split, n, started_at, finished_at, status)
           SELECT 'run' || i, d, 'rh' || i, 'model-' || s || 'b-' || m, 'llama', s, m, 'teacher-70b', d, 'rev1',
                  'test', $per_run, TIMESTAMP '2025-01-01' + INTERVAL (i) MINUTE,
                  TIMESTAMP '2025-01-01' + INTERVAL (i + 1) MINUTE, 'finished'
           FROM (SELECT row_number() OVER () - 1 AS i, m, d, s
                 FROM unnest($methods) t(m), unnest($datasets) u(d), unnest($sizes) v(s))""",
        {"per_run": per_run, "methods": list(METHODS), "datasets": list(DATASETS), "sizes": list(SIZES)},
    )
    con.execute(
        """INSERT INTO samples
           SELECT 'run' || (i // $per_run), 'q' || lpad((i % $per_run)::VARCHAR, 7, '0'),
                  'Synthetic question number ' || i || '?', 'bridge', '["gold"]',
                  CASE WHEN hash(i) % 3 = 0 THEN 'gold' ELSE 'other' END,
                  (hash(i) % 3 = 0)::DOUBLE, (hash(i) % 5) / 4.0, (hash(i) % 3 = 0)::DOUBLE,
                  2, 'answered', (hash(i) % 100) / 50.0, 40, 0.5, (hash(i) % 2)::DOUBLE
           FROM range($n) t(i)""",
        {"per_run": per_run, "n": per_run * N_RUNS},
    )
    con.execute(
        """INSERT INTO steps
           SELECT run_id, question_id, k, 'query ' || k, '["p0", "p1"]', '["p0"]', '["p0", "p1"]',
                  'Reasoning ' || k || '.', 0.1, 20, 0.5, NULL
           FROM samples, range(1, 3) t(k)"""
    )
    con.execute(
        """INSERT INTO paragraphs SELECT run_id, question_id, 'p' || k, 'Title ' || k, 'Text ' || k, k = 0
           FROM samples, range(2) t(k)"""
    )
    # Metrics as the store precomputes them (normal-approximation intervals: the page only reads them).
    for metric in ("em", "f1", "acc", "steps_used", "latency_s", "sp_recall", "answer_in_retrieval"):
        con.execute(
            f"""INSERT INTO metrics SELECT run_id, '{metric}', avg({metric}),
                       avg({metric}) - 1.96 * stddev({metric}) / sqrt(count(*)),
                       avg({metric}) + 1.96 * stddev({metric}) / sqrt(count(*)), count(*)
                FROM samples GROUP BY run_id"""
        )
    con.execute("COMMIT")
    con.close()


def render_once(db: Path, monkeypatch) -> float:
    """Wall time of one full page render with a cold query cache."""
    monkeypatch.setenv("STEPER_DB", str(db))
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=120)
    t0 = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) == len(METHODS) * len(SIZES)
    return elapsed


@pytest.mark.perf
def test_render_time_independent_of_sample_count(tmp_path, monkeypatch):
    small, large = tmp_path / "1k.duckdb", tmp_path / "1m.duckdb"
    t0 = time.perf_counter()
    build_db(small, 1_000)
    build_db(large, 1_000_000)
    print(f"\nbuilt both databases in {time.perf_counter() - t0:.1f} s")
    render_once(small, monkeypatch)  # warm imports
    times = {small: [], large: []}
    for _ in range(5):  # interleaved, so drift on a shared machine hits both alike
        for db in (small, large):
            times[db].append(render_once(db, monkeypatch))
    t_small, t_large = statistics.median(times[small]), statistics.median(times[large])
    ratio = t_large / t_small
    print(f"render (median of 5, cold cache) 1k samples: {t_small:.3f} s, 1M samples: {t_large:.3f} s, "
          f"ratio {ratio:.2f} (goal <= 2)")
    assert ratio <= 2.0

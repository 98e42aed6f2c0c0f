"""The DuckDB results store: schema, replace-on-rerun, metrics, version check, concurrent writers,
and the leaderboard table built from it."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time

import duckdb
import numpy as np
import pytest

from steper_bench.evaluation import store
from steper_bench.evaluation.report import leaderboard_markdown


def _run(run_id: str, **kw) -> dict:
    base = dict(run_id=run_id, recipe_name="r", model="m", method="steper", dataset="hotpotqa", split="test",
                versions={"x": "1"}, seeds={"source": 1}, started_at=dt.datetime(2025, 1, 1),
                finished_at=dt.datetime(2025, 1, 1, 0, 1), status="finished", model_size_b=8.0)
    return {**base, **kw}


def _samples(run_id: str, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        em = float(rng.random() < 0.4)
        out.append(dict(run_id=run_id, question_id=f"q{i}", question=f"Q{i}?", type="bridge", gold=["a", "b"],
                        prediction="a" if em else "z", em=em, f1=float(max(em, rng.random() * 0.8)),
                        acc=float(em or rng.random() < 0.2), steps_used=int(rng.integers(1, 6)),
                        stop_reason="answered", latency_s=float(rng.random()), tokens=int(rng.integers(5, 50)),
                        sp_recall=float(rng.choice([0, 0.5, 1.0])), answer_in_retrieval=float(rng.random() < 0.7)))
    return out


def _steps(run_id: str, n: int) -> list[dict]:
    return [dict(run_id=run_id, question_id=f"q{i}", step=s, query="q", retrieved_pids=["p1", "p2"],
                 new_pids=["p2"], context_pids=["p1", "p2"], reasoning="r.", latency_s=0.1, tokens=3,
                 sp_recall=0.5, error=None) for i in range(n) for s in (1, 2)]


def test_schema_tables_and_write_replaces_rows(tmp_path):
    db = tmp_path / "results.duckdb"
    con = store.connect(db)
    names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"runs", "samples", "steps", "judgments", "paragraphs", "sigma_history", "metrics", "pairwise",
            "schema_version"} <= names
    paras = [dict(run_id="r1", question_id="q0", pid="p1", title="T", text="x", is_supporting=True)]
    sigma = [dict(run_id="r1", step=10, kind="first", sigma=0.9)]
    store.write_run(con, _run("r1"), _samples("r1", 20), _steps("r1", 20), paras, sigma)
    store.write_run(con, _run("r1", model="m2"), _samples("r1", 12, seed=1), _steps("r1", 12), paras, sigma)
    counts = {t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id='r1'").fetchone()[0]
              for t in ("runs", "samples", "steps", "paragraphs", "sigma_history")}
    assert counts == {"runs": 1, "samples": 12, "steps": 24, "paragraphs": 1, "sigma_history": 1}
    assert con.execute("SELECT model FROM runs").fetchall() == [("m2",)]
    # JSON columns hold JSON
    assert con.execute("SELECT json_extract(gold, '$[1]')::VARCHAR FROM samples LIMIT 1").fetchone()[0] == '"b"'
    con.close()


def test_metrics_recompute_from_samples(tmp_path):
    con = store.connect(tmp_path / "r.duckdb")
    store.write_run(con, _run("r1"), _samples("r1", 300), [], [])
    stored = store.read_metrics(con, "r1")
    for metric in ("em", "f1", "acc", "steps_used", "latency_s", "sp_recall", "answer_in_retrieval"):
        values = np.array([r[0] for r in con.execute(f"SELECT {metric} FROM samples WHERE run_id='r1'").fetchall()])
        again = store.bootstrap_mean(values)
        assert stored[metric]["mean"] == pytest.approx(values.mean())
        assert stored[metric]["n"] == 300
        assert stored[metric]["ci_low"] == pytest.approx(again["ci_low"])
        assert stored[metric]["ci_high"] == pytest.approx(again["ci_high"])
        assert stored[metric]["ci_low"] <= stored[metric]["mean"] <= stored[metric]["ci_high"]
    con.close()


def test_bootstrap_matches_plain_resampling():
    """The multinomial shortcut is the ordinary percentile bootstrap: same interval (within
    Monte-Carlo noise) as resampling indices."""
    rng = np.random.default_rng(3)
    values = rng.choice([0.0, 0.25, 0.5, 1.0], size=400, p=[0.5, 0.1, 0.1, 0.3])
    fast = store.bootstrap_mean(values, resamples=4000)
    idx = rng.integers(0, values.size, size=(4000, values.size))
    lo, hi = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    assert fast["ci_low"] == pytest.approx(lo, abs=0.01)
    assert fast["ci_high"] == pytest.approx(hi, abs=0.01)
    # and a large continuous column stays fast (binned)
    t = time.perf_counter()
    big = store.bootstrap_mean(rng.random(1_000_000))
    assert time.perf_counter() - t < 5
    assert big["ci_low"] < 0.5 < big["ci_high"]


def test_schema_version_mismatch_message(tmp_path):
    db = tmp_path / "results.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE runs (run_id VARCHAR)")  # a pre-versioning file
    con.close()
    with pytest.raises(store.StoreError, match=r"results.duckdb has schema v0, this steper-bench writes v2: "):
        store.connect(db)
    db2 = tmp_path / "future.duckdb"
    con = duckdb.connect(str(db2))
    con.execute("CREATE TABLE schema_version (version INTEGER)")
    con.execute("INSERT INTO schema_version VALUES (7)")
    con.close()
    with pytest.raises(store.StoreError, match="future.duckdb has schema v7, this steper-bench writes v2"):
        store.connect(db2, read_only=True)


def test_v1_file_is_upgraded_in_place_by_a_writer(tmp_path):
    """A v1 file (no framework / training-provenance columns) keeps its runs and gains the columns."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    v1 = [stmt for stmt in store.DDL]
    v1[1] = v1[1].split(",\n        framework VARCHAR")[0] + ")"  # the v1 runs table
    for stmt in v1:
        con.execute(stmt)
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO runs (run_id, model, status) VALUES ('old', 'm', 'finished')")
    con.close()
    with pytest.raises(store.StoreError, match="older steper-bench .schema v1, now v2.: any writing command"):
        store.connect(db, read_only=True)
    con = store.connect(db)
    con.close()
    con = store.connect(db, read_only=True)
    assert con.execute("SELECT run_id, model, framework, method_spec FROM runs").fetchall() == [("old", "m", None, None)]
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    con.close()


def test_read_only_missing_file_is_clear(tmp_path):
    with pytest.raises(store.StoreError, match="run `steper-bench eval` first"):
        store.connect(tmp_path / "nope.duckdb", read_only=True)


WRITER = textwrap.dedent("""
    import sys, time, datetime as dt
    sys.path.insert(0, {tests!r})
    from steper_bench.evaluation import store
    from unit.test_store import _run, _samples
    run_id, hold = sys.argv[1], float(sys.argv[2])
    t = time.monotonic()
    con = store.connect({db!r})
    waited = time.monotonic() - t
    time.sleep(hold)  # keep the write lock, as a long write would
    store.write_run(con, _run(run_id), _samples(run_id, 50), [], [])
    con.close()
    print(f"{{waited:.2f}}")
""")


def test_two_processes_writing_both_land(tmp_path, repo_root):
    db = tmp_path / "shared.duckdb"
    store.connect(db).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(repo_root / "tests"), db=str(db)))
    a = subprocess.Popen([sys.executable, str(script), "ra", "1.5"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.7)  # a holds the file by now (imports take ~0.5 s)
    b = subprocess.Popen([sys.executable, str(script), "rb", "0"], stdout=subprocess.PIPE, text=True)
    out_a, _ = a.communicate(timeout=60)
    out_b, _ = b.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0
    con = store.connect(db, read_only=True)
    rows = con.execute("SELECT run_id, count(*) FROM samples GROUP BY run_id ORDER BY run_id").fetchall()
    assert rows == [("ra", 50), ("rb", 50)]
    assert con.execute("SELECT count(*) FROM metrics WHERE metric='em'").fetchone()[0] == 2
    con.close()
    print(f"writer a waited {out_a.strip()} s, writer b waited {out_b.strip()} s")


def test_leaderboard_markdown_layout_and_reads_only_runs_and_metrics(tmp_path):
    con = store.connect(tmp_path / "r.duckdb")
    assert leaderboard_markdown(con).startswith("_No finished runs")
    for run_id, method, dataset, seed in [("a1", "steper", "hotpotqa", 0), ("a2", "steper", "musique", 1),
                                         ("b1", "vanilla-kd", "hotpotqa", 2)]:
        store.write_run(con, _run(run_id, method=method, dataset=dataset, model="Llama-8B", teacher="T-70B"),
                        _samples(run_id, 50, seed), [], [])
    md = leaderboard_markdown(con)
    lines = md.strip().splitlines()
    assert lines[0] == ("| Method | Model | Teacher | Framework | HotpotQA EM | HotpotQA F1 | HotpotQA Acc | MuSiQue EM | "
                        "MuSiQue F1 | MuSiQue Acc | Average EM | Average F1 | Average Acc |")
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| vanilla-kd", "| steper"]
    m = {(r, k): v for r, k, v in con.execute("SELECT run_id, metric, mean FROM metrics").fetchall()}
    steper = lines[3].strip("| ").split(" | ")
    assert steper[1:4] == ["Llama-8B", "T-70B", "ircot"]  # runs without a framework column were IRCoT
    assert steper[4] == f"{100 * m[('a1', 'em')]:.1f}"
    assert steper[7] == f"{100 * m[('a2', 'em')]:.1f}"
    assert steper[10] == f"{100 * (m[('a1', 'em')] + m[('a2', 'em')]) / 2:.1f}"
    assert lines[2].split(" | ")[7] == "–"  # vanilla-kd has no MuSiQue run
    con.execute("DELETE FROM samples")  # the table comes from runs + metrics only (O(runs))
    assert leaderboard_markdown(con) == md
    con.close()


def test_leaderboard_markdown_one_row_per_teacher(tmp_path):
    """Students of the same name distilled from two teachers are two systems, two rows; each
    row shows its own teacher's run, and a re-evaluation replaces the older run of its system."""
    con = store.connect(tmp_path / "r.duckdb")
    late = dt.datetime(2025, 1, 2)
    for run_id, teacher, seed, finished in [("a", "llama-70b", 0, None), ("b", "qwen-72b", 1, None),
                                            ("a-old", "llama-70b", 2, dt.datetime(2024, 1, 1))]:
        run = _run(run_id, model="student-1b", teacher=teacher, finished_at=finished or late)
        store.write_run(con, run, _samples(run_id, 40, seed), [], [])
    lines = leaderboard_markdown(con).strip().splitlines()[2:]
    m = {(r, k): v for r, k, v in con.execute("SELECT run_id, metric, mean FROM metrics").fetchall()}
    got = {ln.strip("| ").split(" | ")[2]: ln.strip("| ").split(" | ")[4] for ln in lines}
    assert got == {"llama-70b": f"{100 * m[('a', 'em')]:.1f}", "qwen-72b": f"{100 * m[('b', 'em')]:.1f}"}
    con.close()


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from steper_bench.evaluation import store
    from unit.test_store import _run, _samples, _steps
    con = store.connect({db!r})
    store.write_run(con, _run("old"), _samples("old", 30), _steps("old", 30), [])
    insert = store._insert

    def insert_then_stall(con, table, rows, *a, **kw):  # stall inside the transaction
        insert(con, table, rows, *a, **kw)
        if table == "samples":
            print("inside", flush=True)
            time.sleep(60)

    store._insert = insert_then_stall
    store.write_run(con, _run("new"), _samples("new", 500), _steps("new", 500), [])
""")


def test_kill_inside_the_write_transaction_leaves_nothing_half_written(tmp_path, repo_root):
    db = tmp_path / "results.duckdb"
    script = tmp_path / "killed_writer.py"
    script.write_text(KILLED_WRITER.format(tests=str(repo_root / "tests"), db=str(db)))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "inside"  # samples inserted, COMMIT not reached
    p.kill()
    p.wait(timeout=10)
    con = store.connect(db)
    counts = dict(con.execute("SELECT run_id, count(*) FROM samples GROUP BY run_id").fetchall())
    assert counts == {"old": 30}  # the killed run left no row; the earlier run is whole
    assert con.execute("SELECT count(*) FROM runs WHERE run_id='new'").fetchone()[0] == 0
    store.write_run(con, _run("new"), _samples("new", 500), _steps("new", 500), [])  # the re-run lands
    assert con.execute("SELECT count(*) FROM samples WHERE run_id='new'").fetchone()[0] == 500
    con.close()

"""The Streamlit leaderboard, run headless with AppTest over a results file.

Numbers on the page are checked against DuckDB queries over the same file, filters against the
rows they must keep, and the sample explorer against the stored steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from steper_bench.evaluation import store
from steper_bench.leaderboard_app import queries

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "leaderboard_app" / "app.py"
TIMEOUT = 60

# (method, model, size_b, teacher) x datasets; `steper` on hotpotqa is evaluated twice (the
# later run must win), the silver teacher has no size.
SYSTEMS = [
    ("steper", "llama-3.2-1b-steper", 1.0, "llama-3.1-70b"),
    ("vanilla-kd", "llama-3.2-1b-vkd", 1.0, "llama-3.1-70b"),
    ("steper", "qwen2.5-0.5b-steper", 0.5, "qwen2.5-72b"),
    ("silver", "supporting-facts", None, "supporting-facts"),
]
DATASETS = ("hotpotqa", "musique")
N_QUESTIONS = 6


def _rows(run_id: str, dataset: str, seed: int):
    samples, steps, paragraphs = [], [], []
    for i in range(N_QUESTIONS):
        qid = f"{dataset}-q{i}"
        right = (i + seed) % 3 != 0
        samples.append(
            {
                "run_id": run_id, "question_id": qid, "question": f"Which $5 city hosts team {i} in {dataset}?",
                "type": "bridge", "gold": [f"City {i}", f"C{i}"], "prediction": f"City {i}" if right else "Nowhere",
                "em": float(right), "f1": 1.0 if right else 0.2 * (seed % 3), "acc": float(right),
                "steps_used": 2, "stop_reason": "answered" if right else "max_steps",
                "latency_s": 0.1 * (seed + 1), "tokens": 40, "sp_recall": 0.5, "answer_in_retrieval": float(right or i % 2),
            }
        )
        for j in range(3):
            paragraphs.append(
                {"run_id": run_id, "question_id": qid, "pid": f"{qid}-p{j}", "title": f"Title {i}.{j}",
                 "text": f"Paragraph {j} about city {i}.", "is_supporting": j < 2}
            )
        for step in (1, 2):
            steps.append(
                {"run_id": run_id, "question_id": qid, "step": step, "query": f"query {step} for {qid}",
                 "retrieved_pids": [f"{qid}-p{step - 1}", f"{qid}-p2"], "new_pids": [f"{qid}-p{step - 1}"],
                 "context_pids": [f"{qid}-p{k}" for k in range(step + 1)],
                 "reasoning": f"Reasoning {step} of {run_id[:6]} on {qid}." + (" So the answer is: x." if step == 2 else ""),
                 "latency_s": 0.05, "tokens": 20, "sp_recall": 0.5 * step,
                 "error": "timeout after 3 retries" if (i, step) == (5, 2) else None}
            )
    return samples, steps, paragraphs


def write_demo_db(path: Path) -> list[str]:
    """A results file written through the store API (the eval command's writer)."""
    con = store.connect(path)
    t0 = datetime(2025, 1, 1)
    run_ids = []
    plan = [(s, d, 0) for s in SYSTEMS for d in DATASETS] + [(SYSTEMS[0], "hotpotqa", 1)]
    for k, ((method, model, size, teacher), dataset, again) in enumerate(plan):
        run_id = f"run{k:02d}-{method}-{dataset}"
        samples, steps, paragraphs = _rows(run_id, dataset, seed=k)
        run = {
            "run_id": run_id, "recipe_name": dataset, "recipe_hash": f"rh{k}", "eval_hash": f"eh{k}", "model": model,
            "model_revision": "main", "model_family": model.split("-")[0], "model_size_b": size, "backend": "openai",
            "method": method, "teacher": teacher, "dataset": dataset, "dataset_revision": f"rev-{dataset}",
            "split": "test", "n": N_QUESTIONS, "versions": {"duckdb": duckdb.__version__}, "git_commit": "abc",
            "seeds": [0], "started_at": t0 + timedelta(hours=k), "finished_at": t0 + timedelta(hours=k, minutes=5),
            "status": "finished",
        }
        sigma = [{"run_id": run_id, "step": s, "kind": kind, "sigma": 0.1 * s + j}
                 for s in range(0, 30, 10) for j, kind in enumerate(("first", "mid", "final"))] if method == "steper" else []
        store.write_run(con, run, samples, steps, paragraphs, sigma)
        run_ids.append(run_id)
    judged = run_ids[-1]  # the latest steper run on hotpotqa: the one the table shows
    store.write_judgments(
        con,
        [
            {"run_id": judged, "question_id": f"hotpotqa-q{i}", "ability": ability, "step": step, "judge_model": "judge-x",
             "rubric_version": "v1", "score": score, "rationale": f"rationale {ability} q{i}", "status": "ok",
             "error": None, "created_at": t0}
            for i in range(N_QUESTIONS)
            for ability, step, score in (("initialization", 1, 4), ("aggregation", 2, 3 + i % 2))
        ],
    )
    # An unfinished run must not show.
    store.write_run(con, {**run, "run_id": "running-1", "status": "running", "model": "half-done"}, [], [], [])
    con.close()
    return run_ids


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lb") / "results.duckdb"
    write_demo_db(path)
    return path


@pytest.fixture(scope="module")
def eval_db(tmp_path_factory) -> Path:
    """A results file written by a real `steper-bench eval` of the quickstart (no trained model
    needed: the supporting-facts silver teacher answers)."""
    work = tmp_path_factory.mktemp("eval")
    db = work / "results.duckdb"
    exe = Path(sys.executable).with_name("steper-bench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "steper_bench"]
    out = subprocess.run(
        cmd + ["eval", str(REPO / "recipes" / "quickstart.yaml"), "--model", "supporting-facts",
               "--set", "eval.limit=5", "--db", str(db)],
        cwd=work, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return db


def run_app(db: Path | str | None, monkeypatch) -> AppTest:
    if db is None:
        monkeypatch.delenv("STEPER_DB", raising=False)
    else:
        monkeypatch.setenv("STEPER_DB", str(db))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def expected(db: Path, metric: str) -> dict[tuple, float]:
    """(method, model, dataset) -> metric mean x100 of the latest finished run, from SQL."""
    con = duckdb.connect(str(db), read_only=True, config=store.DUCKDB_CONFIG)
    rows = con.execute(
        """SELECT r.method, r.model, r.dataset, 100 * m.mean FROM runs r JOIN metrics m USING (run_id)
           WHERE r.status = 'finished' AND m.metric = ?
           QUALIFY row_number() OVER (PARTITION BY r.method, r.model, r.teacher, r.dataset
                                      ORDER BY r.finished_at DESC) = 1""",
        [metric],
    ).fetchall()
    con.close()
    return {(a, b, c): v for a, b, c, v in rows}


def main_table(at: AppTest):
    return at.dataframe[0].value


def test_main_table_matches_duckdb(demo_db, monkeypatch):
    at = run_app(demo_db, monkeypatch)
    table = main_table(at)
    assert len(table) == len(SYSTEMS)  # one row per system, unfinished run left out
    assert "half-done" not in set(table["model"])
    for metric, label in (("em", "EM"), ("f1", "F1"), ("acc", "Acc")):
        want = expected(demo_db, metric)
        for _, row in table.iterrows():
            vals = [want[(row["method"], row["model"], d)] for d in DATASETS]
            for d, v in zip(DATASETS, vals):
                assert row[f"{d} {label}"] == pytest.approx(v)
            assert row[f"avg {label}"] == pytest.approx(sum(vals) / len(vals))
    # The re-evaluated steper run on hotpotqa (written last) is the one shown.
    top = table[table["model"] == "llama-3.2-1b-steper"].iloc[0]
    assert top["runs"].split()[0] == "run08-steper-hotpotqa"
    # Judge scores: mean per question from the judgments table.
    judged = table[table["model"] == "llama-3.2-1b-steper"]["judge aggregation"].iloc[0]
    assert judged == pytest.approx(3.5)
    assert "Main table" in [s.value for s in at.subheader]


@pytest.mark.slow
def test_real_eval_table_and_explorer(eval_db, monkeypatch):
    at = run_app(eval_db, monkeypatch)
    table = main_table(at)
    con = duckdb.connect(str(eval_db), read_only=True, config=store.DUCKDB_CONFIG)
    (run_id, dataset, model, n), = con.execute("SELECT run_id, dataset, model, n FROM runs").fetchall()
    assert list(table["model"]) == [model] and n == 5
    from_samples = con.execute(
        "SELECT 100 * avg(em), 100 * avg(f1), 100 * avg(acc), avg(steps_used) FROM samples WHERE run_id = ?", [run_id]
    ).fetchone()
    row = table.iloc[0]
    for label, v in zip(("EM", "F1", "Acc"), from_samples):
        assert row[f"{dataset} {label}"] == pytest.approx(v) == pytest.approx(row[f"avg {label}"])
    assert row["steps"] == pytest.approx(from_samples[3])
    assert row["runs"] == run_id
    # The explorer shows the first question's stored steps and marks its supporting paragraphs.
    qid, question = con.execute(
        "SELECT question_id, question FROM samples WHERE run_id = ? ORDER BY question_id LIMIT 1", [run_id]
    ).fetchone()
    steps = con.execute(
        "SELECT step, reasoning, retrieved_pids FROM steps WHERE run_id = ? AND question_id = ? ORDER BY step",
        [run_id, qid],
    ).fetchall()
    supporting = {p for (p,) in con.execute(
        "SELECT pid FROM paragraphs WHERE run_id = ? AND question_id = ? AND is_supporting", [run_id, qid]).fetchall()}
    con.close()
    from steper_bench.leaderboard_app.app import md

    text = "\n".join(m.value for m in at.markdown)
    assert f"**Question:** {md(question)}" in text
    for step, reasoning, retrieved in steps:
        assert f"**Step {step}**" in text and md(reasoning) in text
    labels = [e.label for e in at.expander]
    for step, _, retrieved in steps:
        pids = json.loads(retrieved)
        want = f"Retrieved {len(pids)} paragraphs ({len(supporting & set(pids))} supporting)"
        assert want in labels


def test_filters_change_table(demo_db, monkeypatch):
    at = run_app(demo_db, monkeypatch)
    at.sidebar.multiselect[1].select("steper").run()  # Method
    table = main_table(at)
    assert set(table["method"]) == {"steper"} and len(table) == 2
    at.sidebar.multiselect[0].select("musique").run()  # Dataset
    table = main_table(at)
    assert not [c for c in table.columns if c.startswith("hotpotqa")]
    want = expected(demo_db, "acc")
    for _, row in table.iterrows():
        assert row["avg Acc"] == pytest.approx(want[(row["method"], row["model"], "musique")])
    at.sidebar.multiselect[3].select("0.5B").run()  # Size
    assert list(main_table(at)["model"]) == ["qwen2.5-0.5b-steper"]
    at.sidebar.multiselect[1].unselect("steper").select("silver").run()
    at.sidebar.multiselect[3].unselect("0.5B").select(queries.NO_SIZE).run()
    assert list(main_table(at)["model"]) == ["supporting-facts"]
    at.sidebar.multiselect[2].select("qwen2.5").run()  # family: nothing left
    assert any("No runs match" in i.value for i in at.info)


def test_per_run_rows_and_intervals(demo_db, monkeypatch):
    at = run_app(demo_db, monkeypatch)
    at.sidebar.radio[0].set_value("one per run").run()
    at.toggle(key="with_ci").set_value(True).run()
    table = main_table(at)
    assert len(table) == len(SYSTEMS) * len(DATASETS) + 1
    con = duckdb.connect(str(demo_db), read_only=True, config=store.DUCKDB_CONFIG)
    for _, row in table.iterrows():
        lo, hi = con.execute(
            "SELECT ci_low, ci_high FROM metrics WHERE run_id = ? AND metric = 'acc'", [row["run"]]
        ).fetchone()
        assert row["Acc 95% CI"] == f"{100 * lo:.1f}–{100 * hi:.1f}"
    con.close()


def test_explorer_shows_steps_and_compares(demo_db, monkeypatch):
    at = run_app(demo_db, monkeypatch)
    at.selectbox(key="explore_run").set_value("run00-steper-hotpotqa").run()
    at.selectbox(key="explore_question").set_value("hotpotqa-q2").run()
    text = "\n".join(m.value for m in at.markdown)
    assert r"Which \$5 city hosts team 2 in hotpotqa?" in text  # '$' shown literally, not as LaTeX
    assert "query 1 for hotpotqa-q2" in text and "query 2 for hotpotqa-q2" in text
    assert "Reasoning 2 of run00- on hotpotqa-q2. So the answer is: x." in text
    assert ":green-background[supporting] :blue-background[new] **Title 2.0**" in text
    assert "**Title 2.2**: Paragraph 2 about city 2." in [m.value for m in at.markdown]  # not supporting
    assert not at.warning
    assert "City 2 | C2" in text  # gold answers
    captions = "\n".join(c.value for c in at.caption)
    assert "judge aggregation" not in captions  # only run08 was judged
    at.selectbox(key="explore_run").set_value("run08-steper-hotpotqa").run()
    captions = "\n".join(c.value for c in at.caption)
    assert "judge aggregation (judge-x): 3/5. rationale aggregation q2" in captions
    assert "judge initialization (judge-x): 4/5. rationale initialization q2" in captions
    # Side by side: the other steper run on the same dataset and question.
    at.selectbox(key="explore_other").set_value("run02-vanilla-kd-hotpotqa").run()
    text = "\n".join(m.value for m in at.markdown)
    assert text.count("**Question:**") == 2
    assert "Reasoning 1 of run08- on hotpotqa-q2." in text and "Reasoning 1 of run02- on hotpotqa-q2." in text
    at.selectbox(key="explore_other").set_value(None).run()
    at.selectbox(key="explore_question").set_value("hotpotqa-q5").run()
    assert [w.value for w in at.warning] == ["step failed: timeout after 3 retries"]


def test_search_is_parameterised_and_wrong_filter(demo_db, monkeypatch):
    at = run_app(demo_db, monkeypatch)
    at.selectbox(key="explore_run").set_value("run08-steper-hotpotqa").run()
    breakdown = at.dataframe[1].value  # "Why answers fail": outcome x stop reason counts
    con = duckdb.connect(str(demo_db), read_only=True, config=store.DUCKDB_CONFIG)
    want = con.execute(
        """SELECT count(*) FILTER (acc >= 1), count(*) FILTER (acc < 1 AND answer_in_retrieval > 0),
                  count(*) FILTER (acc < 1 AND answer_in_retrieval = 0)
           FROM samples WHERE run_id = 'run08-steper-hotpotqa'"""
    ).fetchone()
    con.close()
    got = breakdown.groupby("outcome")["questions"].sum().to_dict()
    assert (got.get("correct", 0), got.get("wrong: answer was retrieved (reasoning)", 0),
            got.get("wrong: answer never retrieved (retrieval)", 0)) == want
    assert min(want) > 0  # the fixture has every outcome
    at.text_input(key="explore_search").input("'; DROP TABLE runs; --").run()
    assert not at.exception
    assert any("No question matches" in i.value for i in at.info)
    at.text_input(key="explore_search").input("team 4").run()
    assert at.selectbox(key="explore_question").options == ["hotpotqa-q4: Which $5 city hosts team 4 in hotpotqa?"]
    at.text_input(key="explore_search").input("").run()
    at.toggle(key="explore_wrong").set_value(True).run()
    con = duckdb.connect(str(demo_db), read_only=True, config=store.DUCKDB_CONFIG)
    wrong = [r[0] for r in con.execute(
        "SELECT question_id FROM samples WHERE run_id = 'run08-steper-hotpotqa' AND acc < 1 ORDER BY 1").fetchall()]
    con.close()
    assert [o.split(":")[0] for o in at.selectbox(key="explore_question").options] == wrong


def _payload_id(button) -> str:
    return button.proto.url.rsplit("/", 1)[-1].split(".")[0]


def test_downloads_and_charts(demo_db, monkeypatch):
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    from steper_bench.evaluation.report import leaderboard_markdown

    at = run_app(demo_db, monkeypatch)
    buttons = {b.label: b for b in at.get("download_button")}
    paper_csvs = {b for b in buttons if b.endswith(".csv")}  # the Paper tab: one per non-empty table
    assert set(buttons) - paper_csvs == {"Download CSV", "Download Markdown (paper layout)"}
    assert {"Download main.csv", "Download step_ablation.csv", "Download latency.csv"} <= paper_csvs
    # The served bytes are identified by their hash: unfiltered, the Markdown is exactly what
    # `steper-bench report` prints (one implementation); the CSV is the table shown.
    from steper_bench.cli import app

    report = CliRunner().invoke(app, ["report", "--db", str(demo_db)])
    assert report.exit_code == 0, report.output
    md = report.stdout
    assert md.startswith("| Method | Model | Teacher |") and len(md.strip().splitlines()) == 2 + len(SYSTEMS)
    md_id = _calculate_file_id(md.encode(), "text/markdown", "leaderboard.md")
    assert _payload_id(buttons["Download Markdown (paper layout)"]) == md_id
    csv = main_table(at).to_csv(index=False)
    assert _payload_id(buttons["Download CSV"]) == _calculate_file_id(csv.encode(), "text/csv", "leaderboard.csv")
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert len(charts) > 4  # Charts tab: scaling, trade-off, abilities, sigma; then the Paper tab's figures
    charts = charts[:4]
    assert charts[0]["encoding"]["x"]["field"] == "size (B)" and charts[0]["encoding"]["y"]["field"] == "avg Acc"
    assert charts[1]["encoding"]["x"]["field"] == "latency (s)"
    assert charts[2]["encoding"]["x"]["field"] == "ability"
    assert charts[3]["encoding"]["y"]["field"] == "sigma"
    assert "log" not in charts[3]["encoding"]["y"]["title"]  # the stored values are sigma (start near 1)
    # With filters, the export holds the filtered systems only, like the table on the page.
    at.sidebar.multiselect[1].select("vanilla-kd").run()  # Method
    con = duckdb.connect(str(demo_db), read_only=True, config=store.DUCKDB_CONFIG)
    filtered = leaderboard_markdown(con, queries.Filters(methods=("vanilla-kd",)))
    con.close()
    assert [ln.split(" | ")[0] for ln in filtered.strip().splitlines()[2:]] == ["| vanilla-kd"]
    button = {b.label: b for b in at.get("download_button")}["Download Markdown (paper layout)"]
    assert _payload_id(button) == _calculate_file_id(filtered.encode(), "text/markdown", "leaderboard.md")


def test_new_results_show_without_restart(tmp_path, monkeypatch):
    db = tmp_path / "results.duckdb"
    write_demo_db(db)
    at = run_app(db, monkeypatch)
    assert len(main_table(at)) == len(SYSTEMS)
    con = store.connect(db)
    row = con.execute("SELECT * FROM runs WHERE run_id = 'run00-steper-hotpotqa'").df().iloc[0].to_dict()
    row.update(run_id="new-run", model="brand-new-model", versions={}, seeds=[])
    samples, steps, paragraphs = _rows("new-run", "hotpotqa", seed=3)
    store.write_run(con, row, samples, steps, paragraphs)
    con.close()
    at.run()  # same process, same cache: the file's new mtime must invalidate it
    assert "brand-new-model" in set(main_table(at)["model"])


@pytest.mark.parametrize("case", ["unset", "missing", "empty", "garbage", "no-runs"])
def test_missing_or_empty_database_gives_a_message(case, tmp_path, monkeypatch):
    db = tmp_path / "results.duckdb"
    if case == "empty":
        db.touch()
    elif case == "garbage":
        db.write_bytes(b"this is not a duckdb file" * 100)
    elif case == "no-runs":
        store.connect(db).close()
    at = run_app(None if case == "unset" else db, monkeypatch)
    messages = [e.value for e in (*at.info, *at.warning, *at.error)]
    assert len(messages) == 1, messages
    assert not at.dataframe
    if case != "unset":
        assert str(db) in messages[0] or db.name in messages[0]


def test_app_does_not_modify_the_file(demo_db, monkeypatch):
    before = (demo_db.stat().st_mtime_ns, demo_db.read_bytes())
    run_app(demo_db, monkeypatch)
    assert (demo_db.stat().st_mtime_ns, demo_db.read_bytes()) == before
    assert not Path(f"{demo_db}.wal").exists()


def test_db_path_resolution(tmp_path):
    env = {"STEPER_DB": str(tmp_path / "env.duckdb")}
    assert queries.resolve_db_path(["--db", "a.duckdb"], env) == Path("a.duckdb")
    assert queries.resolve_db_path(["--db=b.duckdb"], env) == Path("b.duckdb")
    assert queries.resolve_db_path([], env) == tmp_path / "env.duckdb"
    assert queries.resolve_db_path([], {}) is None


def test_cli_db_order_flag_then_env_then_default(tmp_path, monkeypatch):
    """`steper-bench leaderboard`: --db wins, then STEPER_DB, then results.duckdb here. The
    command's exec is intercepted: the argv and environment it would start streamlit with."""
    from steper_bench.cli import app

    launched = []

    def fake_exec(path, argv, env):
        launched.append((argv, env["STEPER_DB"]))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_exec)
    monkeypatch.chdir(tmp_path)
    flag, env_db = tmp_path / "flag.duckdb", tmp_path / "env.duckdb"
    for args, env, want in [(["--db", str(flag)], env_db, flag), ([], env_db, env_db),
                            ([], None, tmp_path / "results.duckdb")]:
        if env is None:
            monkeypatch.delenv("STEPER_DB", raising=False)
        else:
            monkeypatch.setenv("STEPER_DB", str(env))
        out = CliRunner().invoke(app, ["leaderboard", "--headless", *args])
        assert out.exit_code == 0, out.output
        argv, passed = launched.pop()
        assert argv[argv.index("--"):] == ["--", "--db", str(want.resolve())] and passed == str(want.resolve())


def test_cli_help_and_packaged_app():
    from importlib.resources import files

    packaged = files("steper_bench.leaderboard_app") / "app.py"
    assert packaged.is_file()
    cmd = queries.launch_command(Path(str(packaged)), Path("/x/r.duckdb"), 8600, True, "127.0.0.1")
    assert cmd[cmd.index("--"):] == ["--", "--db", "/x/r.duckdb"]
    assert cmd[cmd.index("--server.port") + 1] == "8600" and "--server.headless" in cmd
    exe = shutil.which("steper-bench") or ""
    out = subprocess.run(
        [exe, "leaderboard", "--help"] if exe else [sys.executable, "-m", "steper_bench", "leaderboard", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    for opt in ("--db", "--port", "--headless"):
        assert opt in out.stdout


def test_dataset_filter_on_real_evals(tmp_path, monkeypatch):
    """Two real evals of the silver teacher (HotpotQA and 2Wiki samples) in one file: the table
    holds both datasets' columns and the dataset filter narrows it to one."""
    from steper_bench.evaluation import evaluate
    from steper_bench.recipe import load_recipe

    db = tmp_path / "results.duckdb"
    wiki = ["source.dataset=2wikimultihopqa", "source.train_file=../data/2wikimultihopqa/train.jsonl",
            "source.test_file=../data/2wikimultihopqa/dev.jsonl"]
    for extra in ([], wiki):
        r = load_recipe(REPO / "recipes" / "quickstart.yaml", [f"runs_dir={tmp_path / 'runs'}", "eval.limit=4", *extra])
        evaluate(r, model="supporting-facts", db=db, progress=False)
    at = run_app(db, monkeypatch)
    table = main_table(at)
    assert {"hotpotqa Acc", "2wikimultihopqa Acc"} <= set(table.columns)
    want = expected(db, "acc")
    row = table.iloc[0]
    assert row["2wikimultihopqa Acc"] == pytest.approx(want[("silver", "supporting-facts", "2wikimultihopqa")])
    at.sidebar.multiselect[0].select("2wikimultihopqa").run()  # Dataset
    table = main_table(at)
    assert not [c for c in table.columns if c.startswith("hotpotqa")]
    assert table.iloc[0]["avg Acc"] == pytest.approx(want[("silver", "supporting-facts", "2wikimultihopqa")])


def test_paper_view_shows_every_table_as_report_paper_does(demo_db, monkeypatch):
    from steper_bench.evaluation import paper

    at = run_app(demo_db, monkeypatch)
    titles = [h.value for h in at.subheader]
    assert all(t in titles for t in paper.TITLES.values()), titles
    con = store.connect(demo_db, read_only=True)
    try:
        tables = paper.paper_tables(con)
    finally:
        con.close()
    shown = {len(df.value): df.value for df in at.dataframe}
    main = pd.DataFrame(tables["main"]).drop(columns=["run_id"], errors="ignore")
    assert len(main) in shown  # the Paper tab's main table is the report's, row for row
    got = shown[len(main)]
    assert list(got["acc"].fillna(-1)) == list(main["acc"].fillna(-1))
    assert main["missing"].any() and not main["missing"].all()  # the demo file lacks some cells of the layout
    assert paper.csv_text(tables["main"]).splitlines()[0].startswith("method,model,dataset,em")

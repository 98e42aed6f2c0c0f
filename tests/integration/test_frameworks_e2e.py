"""Each framework end to end (silver build -> tiny student -> eval -> report), and a dataset
added by one file (a recipe's `imports:`) that builds and evaluates like a built-in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from steper_bench.build import build
from steper_bench.evaluation import evaluate, store
from steper_bench.evaluation.report import leaderboard_markdown
from steper_bench.pipeline import run
from steper_bench.recipe import RecipeError, load_recipe
from steper_bench.registry import DATASETS

SMALL = ["source.train_limit=16", "source.test_limit=4", "train.methods=[steper]", "train.max_steps=3",
         "train.max_length=384", "framework.paragraph_chars=200", "corpus.max_paragraphs=6",
         "eval.max_new_tokens=8", "eval.models=[trained:steper]"]
CASES = [("ircot", "hotpotqa"), ("self-ask", "musique"), ("single-step", "hotpotqa"), ("no-retrieval", "hotpotqa")]


@pytest.mark.slow
@pytest.mark.parametrize("framework, dataset", CASES)
def test_framework_builds_trains_evaluates_and_reports(tmp_path, repo_root, framework, dataset):
    sets = [f"runs_dir={tmp_path / 'runs'}", f"eval.db={tmp_path / 'r.duckdb'}", f"framework.name={framework}",
            f"source.dataset={dataset}", f"source.train_file=../data/{dataset}/train.jsonl",
            f"source.test_file=../data/{dataset}/dev.jsonl", *SMALL]
    recipe = load_recipe(repo_root / "recipes" / "quickstart.yaml", sets)
    report = run(recipe, progress=False, say=lambda m: None)
    assert [s.status for s in report.stages] == ["done", "done", "done", "done"]  # build, train, 2 evals
    con = store.connect(tmp_path / "r.duckdb", read_only=True)
    try:
        runs = con.execute("SELECT run_id, method, framework FROM runs ORDER BY method").fetchall()
        assert {(m, f) for _, m, f in runs} == {("silver", framework), ("steper", framework)}
        silver = next(r for r, m, _ in runs if m == "silver")
        steps = con.execute("SELECT max(steps_used), avg(acc) FROM samples WHERE run_id=?", [silver]).fetchone()
        n_paras = con.execute("SELECT count(*) FROM paragraphs WHERE run_id=?", [silver]).fetchone()[0]
        table = leaderboard_markdown(con)
    finally:
        con.close()
    if framework in ("single-step", "no-retrieval"):
        assert steps[0] == 1
    assert (n_paras == 0) == (framework == "no-retrieval")
    assert steps[1] >= 0.5  # the silver teacher answers through every framework
    assert "| Framework |" in table.splitlines()[0] and f"| {framework} |" in table


def test_a_dataset_added_by_one_file_builds_and_evaluates(tmp_path, repo_root):
    plugin = repo_root / "tests" / "fixtures" / "plugin"
    text = (f"name: toy\nruns_dir: {tmp_path / 'runs'}\nimports: [toyqa.py]\n"
            "source: {dataset: toyqa, train_file: train.jsonl, test_file: dev.jsonl}\n"
            "framework: {few_shot: 0, max_steps: 3}\n")
    path = Path(tmp_path / "toy.yaml")
    path.write_text(text.replace("toyqa.py", str(plugin / "toyqa.py")).replace("train.jsonl", str(plugin / "train.jsonl"))
                    .replace("dev.jsonl", str(plugin / "dev.jsonl")))
    try:
        recipe = load_recipe(path)
        summary = build(recipe, progress=False, log=lambda m: None)
        assert summary.kept["train"] == 12 and summary.counts["first"]["train"] == 12  # 2-hop chains
        result = evaluate(recipe, model="supporting-facts", db=tmp_path / "r.duckdb", progress=False)
        assert result.n == 6 and result.metrics["acc"]["mean"] == 1.0
        assert result.lm_eval["results"]["acc,none"] == 1.0  # lm-eval ran the task made for this dataset
        # A dataset without demonstrations: asking for few-shot is a clear error, never another dataset's.
        with pytest.raises(RecipeError, match="dataset 'toyqa' has no ircot demonstrations"):
            from steper_bench.reasoning.loop import LoopSettings

            LoopSettings.from_recipe(load_recipe(path, ["framework.few_shot=2"]), "teacher")
    finally:
        DATASETS.unregister("toyqa")
    with pytest.raises(RecipeError, match="'toyqa' is not a known dataset.*allowed: 2wikimultihopqa, hotpotqa"):
        load_recipe(path, ["imports=[]"])

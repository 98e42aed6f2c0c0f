"""Methods as data end to end: every preset and an inline fixed-weight method train a tiny student
and land as separate runs; ICL baseline rows (teacher and untrained student, few-shot); an
out-of-domain test set; and train_questions sampling without touching the build."""

from __future__ import annotations

import json

import pytest

from steper_bench.evaluation import store
from steper_bench.pipeline import run
from steper_bench.recipe import load_recipe
from steper_bench.runs import RunPaths

FIXED = "{name: fixed-2-1-1, kinds: [first, mid, final], weighting: fixed, weights: {first: 2, mid: 1, final: 1}}"
METHODS = ["vanilla-kd", "steper-first", "steper-first-mid", "steper", "fixed-2-1-1"]
SETS = ["source.train_limit=16", "source.test_limit=3", "train.max_steps=2", "train.max_length=320",
        "framework.paragraph_chars=150", "corpus.max_paragraphs=5", "eval.max_new_tokens=6",
        f"train.methods=[vanilla-kd, steper-first, steper-first-mid, steper, {FIXED}]",
        "eval.models=[trained:vanilla-kd, trained:steper-first, trained:steper-first-mid, trained:steper, "
        "trained:fixed-2-1-1, {model: student, few_shot: 1}]",
        "eval.datasets=[{dataset: musique, test_file: ../data/musique/dev.jsonl, test_limit: 3}]"]


@pytest.mark.slow
def test_every_method_and_baseline_lands_as_its_own_run(tmp_path, repo_root):
    db = tmp_path / "r.duckdb"
    recipe = load_recipe(repo_root / "recipes" / "quickstart.yaml",
                         [f"runs_dir={tmp_path / 'runs'}", f"eval.db={db}", *SETS])
    report = run(recipe, progress=False, say=lambda m: None)
    trained = [s.what for s in report.stages if s.stage == "train"]
    assert trained == METHODS and all(s.status == "done" for s in report.stages)
    con = store.connect(db, read_only=True)
    try:
        rows = con.execute("SELECT method, dataset, few_shot, trained_on, train_build, method_spec, framework "
                           "FROM runs ORDER BY dataset, method").fetchall()
    finally:
        con.close()
    build = recipe.stage_hash("build")
    for dataset in ("hotpotqa", "musique"):  # the recipe's own test set and the out-of-domain one
        got = {r[0]: r for r in rows if r[1] == dataset}
        assert set(got) == {*METHODS, "base", "silver"}
        for m in METHODS:
            _, _, shots, trained_on, train_build, spec, framework = got[m]
            assert (shots, trained_on, train_build, framework) == (0, "hotpotqa", build, "ircot")
            assert json.loads(spec) == recipe.method(m).spec()
        assert got["base"][2] == 1 and got["base"][3] is None  # the untrained student, 1-shot ICL
        assert got["silver"][2] == recipe.framework.few_shot  # the teacher, evaluated as it built the data
    assert json.loads(got["fixed-2-1-1"][5])["weights"] == {"first": 2, "mid": 1, "final": 1}
    # each method its own folder and hash; a re-run does nothing
    folders = {RunPaths.for_recipe(recipe).train(m).name for m in METHODS}
    assert len(folders) == len(METHODS)
    again = run(recipe, progress=False, say=lambda m: None)
    assert {s.status for s in again.stages} == {"skipped"}


def test_train_questions_changes_training_not_the_build(tmp_path, repo_root):
    base = load_recipe(repo_root / "recipes" / "quickstart.yaml", [f"runs_dir={tmp_path}"])
    small = load_recipe(repo_root / "recipes" / "quickstart.yaml", [f"runs_dir={tmp_path}", "train.train_questions=20"])
    assert small.stage_hash("build") == base.stage_hash("build")  # same trajectories, same corpus
    assert small.train_hash("steper") != base.train_hash("steper")
    assert RunPaths.for_recipe(small).dataset == RunPaths.for_recipe(base).dataset

"""`eval` with `corpus.source: file`: the loop retrieves only from that file (the `paragraphs` table
holds the file's paragraphs, under the file's ids) and support recall per step matches the
question's gold paragraphs by title and text, across the dump's different sentence joining."""

from __future__ import annotations

import json

import pytest
from steper_bench.evaluation import evaluate, store
from steper_bench.recipe import load_recipe
from support.corpora import HOTPOT_FILES, write_abstracts_dump

N = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("filecorpus")
    records = write_abstracts_dump(tmp / "wiki", HOTPOT_FILES)
    recipe = load_recipe(
        repo_root / "recipes" / "quickstart.yaml",
        [
            f"runs_dir={tmp / 'runs'}",
            "corpus.source=file",
            f"corpus.files={tmp / 'wiki'}",
            "corpus.format=hotpotqa-abstracts",
            "framework.max_steps=3",
            f"eval.limit={N}",
        ],
    )
    db = tmp / "results.duckdb"
    res = evaluate(recipe, model="supporting-facts", db=db, progress=False)
    con = store.connect(db, read_only=True)
    try:
        tables = {
            name: con.execute(f"SELECT * FROM {name} WHERE run_id=?", [res.run_id]).fetchdf()
            for name in ("paragraphs", "steps", "samples")
        }
    finally:
        con.close()
    return res, tables, records


def test_paragraphs_come_from_the_file_only(run):
    res, t, records = run
    by_id = {r["id"]: r for r in records}
    assert res.n == N and len(t["paragraphs"]) > 0
    for row in t["paragraphs"].itertuples():
        src = by_id[row.pid]  # the dump's own ids, never a question's "<qid>-<i>"
        assert (row.title, row.text) == (src["title"], " ".join(s.strip() for s in src["text"]))


def test_support_recall_matches_gold_by_title_and_text(run):
    _, t, _ = run
    # The dump's text is IRCoT's join (sentences stripped, one space), a question's is HotpotQA's
    # ("".join): they differ where a sentence has no leading space, and still match.
    assert t["paragraphs"]["is_supporting"].sum() > 0
    assert t["steps"]["sp_recall"].notna().all() and t["steps"]["sp_recall"].max() == 1.0
    final = t["samples"]["sp_recall"]
    assert final.notna().all() and final.mean() >= 0.8
    # Recall never drops from one step to the next: the context only grows.
    for _, steps in t["steps"].sort_values("step").groupby("question_id"):
        assert list(steps["sp_recall"]) == sorted(steps["sp_recall"])
    seen = set(t["paragraphs"]["pid"])
    contexts = [json.loads(c) for c in t["steps"]["context_pids"]]  # JSON columns
    assert all(ctx for ctx in contexts) and all(p in seen for ctx in contexts for p in ctx)

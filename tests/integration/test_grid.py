"""Experiment grids: matrix cells are ordinary recipes; run runs them all (or --only), a re-run of a
finished grid does no work, validate lists the cells, and bad grids say what to fix."""

from __future__ import annotations

import json

import pytest
from steper_bench import grid
from steper_bench.cli import app
from steper_bench.evaluation import paper, store
from steper_bench.recipe import RecipeError, load_recipe
from typer.testing import CliRunner

SMALL = """
source: {{dataset: hotpotqa, train_file: {data}/hotpotqa/train.jsonl, test_file: {data}/hotpotqa/dev.jsonl,
          train_limit: 10, test_limit: 3}}
corpus: {{top_k: 2, max_paragraphs: 4}}
framework: {{max_steps: 3, paragraph_chars: 120, max_new_tokens: 6}}
teacher: {{backend: supporting-facts, model: supporting-facts}}
train: {{methods: [vanilla-kd], student: tiny, learning_rate: 1.0e-3, max_steps: 2, max_length: 256, per_device_train_batch_size: 4,
        gradient_accumulation_steps: 1}}
eval: {{models: [trained:vanilla-kd], include_teacher: false, max_new_tokens: 6}}
"""


def _grid(tmp_path, repo_root, matrix: str):
    path = tmp_path / "grid.yaml"
    path.write_text(f"name: g\nruns_dir: {tmp_path / 'runs'}\n" + SMALL.format(data=repo_root / "data") + matrix)
    return path


MATRIX_2X2 = """
matrix:
  corpus.top_k: [1, 2]
  train.seed: [1, 2]
"""


def test_cells_are_the_product_and_each_loads_as_the_recipe_written_out(tmp_path, repo_root):
    path = _grid(tmp_path, repo_root, MATRIX_2X2)
    cells = grid.cells(path)
    assert [c.label for c in cells] == [
        "corpus.top_k=1, train.seed=1", "corpus.top_k=1, train.seed=2",
        "corpus.top_k=2, train.seed=1", "corpus.top_k=2, train.seed=2"]
    by_hand = load_recipe(path, ["corpus.top_k=2", "train.seed=2"], grid=True)
    assert grid.load_cell(path, cells[3]).hash == by_hand.hash
    assert len({grid.load_cell(path, c).stage_hash("build") for c in cells}) == 2  # top_k changes the build
    assert [c.index for c in grid.select(cells, ["corpus.top_k=2"])] == [3, 4]
    assert [c.index for c in grid.select(cells, ["corpus.top_k=2", "train.seed=2"])] == [4]
    with pytest.raises(RecipeError, match="not an axis"):
        grid.select(cells, ["source.seed=1"])
    with pytest.raises(RecipeError, match="no cell matches"):
        grid.select(cells, ["corpus.top_k=3"])
    with pytest.raises(RecipeError, match="is a grid"):  # a single-stage command cannot take the whole grid
        load_recipe(path)


def test_only_reaches_inside_a_section_axis(tmp_path, repo_root):
    path = _grid(tmp_path, repo_root, "matrix:\n  corpus: [{top_k: 1}, {top_k: 2, mode: per-question}]\n")
    assert [c.index for c in grid.select(grid.cells(path), ["corpus.mode=per-question"])] == [2]
    assert grid.load_cell(path, grid.cells(path)[1]).corpus.mode == "per-question"


def test_blocks_union_and_bad_grids(tmp_path, repo_root):
    path = _grid(tmp_path, repo_root, "matrix:\n  - {corpus.top_k: [1, 2]}\n  - {corpus.top_k: [2, 3]}\n")
    assert [c.label for c in grid.cells(path)] == ["corpus.top_k=1", "corpus.top_k=2", "corpus.top_k=3"]
    with pytest.raises(RecipeError, match="non-empty list"):
        grid.cells(_grid(tmp_path, repo_root, "matrix:\n  corpus.top_k: 4\n"))
    bad = _grid(tmp_path, repo_root, "matrix:\n  corpus.top_k: [1, 500]\n")
    with pytest.raises(RecipeError, match=r"(?s)grid cell 2 \(corpus.top_k=500\).*top_k"):
        grid.load_cell(bad, grid.cells(bad)[1])


@pytest.mark.slow
def test_run_runs_every_cell_then_a_rerun_does_no_work(tmp_path, repo_root):
    path = _grid(tmp_path, repo_root, MATRIX_2X2)
    db = tmp_path / "r.duckdb"
    cli = CliRunner()
    listed = cli.invoke(app, ["validate", str(path)])
    assert listed.exit_code == 0 and listed.output.count("# cell ") == 4, listed.output
    first = cli.invoke(app, ["run", str(path), "--quiet", "--db", str(db)])
    assert first.exit_code == 0, first.output
    assert "grid: 4 cell(s) done" in first.output
    con = store.connect(db, read_only=True)
    try:
        runs = con.execute("SELECT method, COUNT(*) FROM runs GROUP BY method ORDER BY method").fetchall()
    finally:
        con.close()
    assert runs == [("vanilla-kd", 4)]  # one run per cell
    again = cli.invoke(app, ["run", str(path), "--quiet", "--db", str(db)])
    assert again.exit_code == 0, again.output
    assert "generated" not in again.output.replace("0 generated", "") and "steps in" not in again.output
    assert again.output.count("skipped") >= 4 * 2, again.output  # build, train, eval of every cell skipped
    rep = cli.invoke(app, ["report", "--db", str(db), "--paper", "--format", "json"])
    assert rep.exit_code == 0, rep.output
    tables = json.loads(rep.stdout)
    assert list(tables) == list(paper.KEYS)
    ran = [r for r in tables["main"] if r["method"] == "vanilla-kd" and r["dataset"] == "hotpotqa"]
    assert ran and not ran[0]["missing"] and ran[0]["acc"] is not None and len(ran[0]["acc_ci"]) == 2
    steper = [r for r in tables["main"] if r["method"] == "steper"]
    assert steper and all(r["missing"] and r["acc"] is None for r in steper)  # not run: shown, not dropped
    assert {r["method"] for r in tables["step_ablation"]} == set(paper.ABLATION)
    assert [r["run_id"] for r in tables["latency"] if not r["missing"]]
    md = cli.invoke(app, ["report", "--db", str(db), "--paper"])
    assert md.exit_code == 0 and all(f"## {t}" in md.stdout for t in paper.TITLES.values())
    one = cli.invoke(app, ["run", str(path), "--quiet", "--db", str(db), "--only", "corpus.top_k=9"])
    assert one.exit_code == 2 and "no cell matches" in one.output

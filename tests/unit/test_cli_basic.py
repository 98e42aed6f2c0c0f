"""`steper-bench validate` and `steper-bench score` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from steper_bench.cli import app

REPO = Path(__file__).resolve().parents[2]
HOTPOT_DEV = REPO / "data" / "hotpotqa" / "dev.jsonl"
runner = CliRunner()


def test_validate_good_recipe_prints_resolved_recipe_and_hash():
    res = runner.invoke(app, ["validate", str(REPO / "recipes" / "quickstart.yaml"), "--set", "corpus.top_k=3"])
    assert res.exit_code == 0, res.output
    assert "top_k: 3" in res.stdout and "# hash: " in res.stdout
    assert "1 recipe(s) valid" in res.stderr


def test_validate_broken_recipe_exits_2_naming_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source:\n  test_file: dev.jsonl\nframework:\n  max_step: 3\n")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:4: framework.max_step: unknown key; did you mean 'max_steps'?" in res.stderr
    assert "Traceback" not in res.output


def test_validate_bad_override_exits_2(tmp_path):
    res = runner.invoke(app, ["validate", str(REPO / "recipes" / "quickstart.yaml"), "--set", "corpus.mode=global"])
    assert res.exit_code == 2
    assert "(--set corpus.mode=global): corpus.mode: 'global' is not allowed" in res.stderr


def write_predictions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_last_stdout_line_is_json(tmp_path):
    gold = [json.loads(line) for line in HOTPOT_DEV.open()]
    # 10 exact answers, 10 answers sharing no token with the gold, 30 missing: EM = F1 = Acc = 0.2.
    rows = [{"id": g["_id"], "prediction": g["answer"]} for g in gold[:10]]
    rows += [{"id": g["_id"], "prediction": "zzqx"} for g in gold[10:20]]
    preds = write_predictions(tmp_path / "preds.jsonl", rows)
    out = subprocess.run(
        [sys.executable, "-m", "steper_bench", "score", "--dataset", "hotpotqa", "--gold", str(HOTPOT_DEV),
         "--predictions", str(preds)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last == {"n": 50, "em": 0.2, "f1": 0.2, "acc": 0.2}
    assert "bridge" in out.stderr and "comparison" in out.stderr  # per-type table for people
    assert "30 question(s) have no prediction" in out.stderr


def test_score_musique_uses_aliases(tmp_path):
    gold = REPO / "data" / "musique" / "dev.jsonl"
    first = json.loads(gold.open().readline())
    preds = write_predictions(tmp_path / "p.jsonl", [{"id": first["id"], "prediction": first["answer_aliases"][0]}])
    res = runner.invoke(app, ["score", "--dataset", "musique", "--gold", str(gold), "--predictions", str(preds)])
    assert res.exit_code == 0, res.output
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last["n"] == 30 and last["em"] == 1 / 30


def test_score_bad_inputs_exit_2_with_clear_errors(tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "a", "prediction": "x"}\n{"id": "b", "prediction": \n')
    args = ["score", "--dataset", "hotpotqa", "--gold", str(HOTPOT_DEV), "--predictions"]
    res = runner.invoke(app, args + [str(preds)])
    assert res.exit_code == 2 and f"{preds}:2: invalid JSON" in res.stderr
    res = runner.invoke(app, args + [str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "no such file" in res.stderr
    preds.write_text('{"id": "a"}\n')
    res = runner.invoke(app, ["score", "--dataset", "musique", "--gold", str(HOTPOT_DEV), "--predictions", str(preds)])
    assert res.exit_code == 2 and "is --dataset musique the format of this file?" in res.stderr
    res = runner.invoke(app, ["score", "--dataset", "squad", "--gold", str(HOTPOT_DEV), "--predictions", str(preds)])
    assert res.exit_code == 2 and "unknown" in res.stderr

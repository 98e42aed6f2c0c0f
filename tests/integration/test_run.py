"""`steper-bench run`: the whole pipeline, skipping finished stages, `--force STAGE`, `--profile`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["source.train_limit=10", "source.test_limit=3", "train.methods=[steper]", "train.max_steps=2",
         "eval.models=[trained:steper]"]


def _run(tmp_path, *extra, quiet: bool = True):
    cmd = [sys.executable, "-m", "steper_bench", "run", str(REPO / "recipes" / "quickstart.yaml"),
           *(["--quiet"] if quiet else []), *[x for s in SMALL for x in ("--set", s)], *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    return [ln for ln in p.stderr.splitlines() if ln.startswith("[")], p.stderr


@pytest.mark.slow
def test_run_then_rerun_skips_and_force_redoes_one_stage(tmp_path):
    first, _ = _run(tmp_path)
    assert [ln.split(":")[0] for ln in first] == [  # in the order the stages run
        "[build] quickstart", "[train] steper", "[eval] trained", "[eval] teacher", "[judge] skipped"]
    assert all(": done in" in ln for ln in first if not ln.startswith("[judge]"))
    assert (tmp_path / "results.duckdb").exists() and list((tmp_path / "runs").glob("quickstart-*/train/steper-*"))

    again, err = _run(tmp_path, "--profile")
    assert all(": skipped" in ln or ln.startswith("[judge] skipped:") for ln in again), again
    assert "time per stage and phase" in err

    forced, _ = _run(tmp_path, "--force", "train")
    status = {ln.split(":")[0]: ln.split(":")[1].split(" in ")[0].strip() for ln in forced}
    assert status["[train] steper"] == "done"
    assert status["[build] quickstart"] == status["[eval] teacher"] == "skipped"
    bad = subprocess.run([sys.executable, "-m", "steper_bench", "run", str(REPO / "recipes" / "quickstart.yaml"),
                          "--force", "everything"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "allowed stages are build, train, eval, judge or all" in bad.stderr


# What other libraries print when left alone (each seen in the quickstart's output before).
NOISE = ("Generating train split", "Loading weights", "Writing model shards", "{'loss'", "{'train_runtime'",
         "Custom kwargs", "Overwriting default num_fewshot", "it/s]", "FutureWarning", "fatal:", "Traceback")


@pytest.mark.slow
def test_run_prints_only_its_own_lines_and_ends_with_the_table(tmp_path):
    _, err = _run(tmp_path, quiet=False)  # progress lines included
    assert not [n for n in NOISE if n in err], err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert all(len(ln) <= 80 for ln in lines if not ln.startswith(("[", "dataset:", "model ", "results:"))), err
    table = next(i for i, ln in enumerate(lines) if ln.startswith("EM / F1 / Acc in %"))
    assert any(ln.lstrip().startswith("teacher (silver)") and "100.0±0.0" in ln for ln in lines[table:])
    assert [ln.split(":")[0] for ln in lines[-4:]] == ["dataset", "model steper", "results", "leaderboard"]
    logs = {p.name: p.read_text() for p in tmp_path.glob("runs/quickstart-*/logs/*.log")}
    assert {"build.log", "train.log", "eval.log"} <= set(logs) and "step" in logs["train.log"]

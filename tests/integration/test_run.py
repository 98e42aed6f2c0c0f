"""`steper-bench run`: the whole pipeline, skipping finished stages, `--force STAGE`, `--profile`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["source.train_limit=10", "source.test_limit=3", "train.methods=[steper]", "train.max_steps=2",
         "eval.models=[trained:steper]"]


def _run(tmp_path, *extra):
    cmd = [sys.executable, "-m", "steper_bench", "run", str(REPO / "recipes" / "quickstart.yaml"), "--quiet",
           *[x for s in SMALL for x in ("--set", s)], *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    return [ln for ln in p.stderr.splitlines() if ln.startswith("[")], p.stderr


@pytest.mark.slow
def test_run_then_rerun_skips_and_force_redoes_one_stage(tmp_path):
    first, _ = _run(tmp_path)
    assert [ln.split(":")[0] for ln in first] == [
        "[build] quickstart", "[train] steper", "[judge] skipped", "[eval] trained", "[eval] teacher"]
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

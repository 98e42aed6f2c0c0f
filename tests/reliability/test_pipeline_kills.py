"""SIGKILL the real CLI during training and during eval, re-run, and compare with the clean run.

Build kills are covered by tests/integration/test_build.py::test_sigkill_midway_then_resume_equals_uninterrupted
and Hub-push kills by tests/integration/test_publish.py::test_new_repo_is_private_and_killed_push_converges.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from support.reliability import (
    HF_MARK, OPENAI_MARK, QUICKSTART, SMALL, cli_env, db_view, figure, kill_when, no_traceback, run_cli,
    sets_args, spawn,
)

pytestmark = pytest.mark.slow


def _train_dir(run_root: Path) -> Path:
    found = list((run_root / "train").glob("steper-*"))
    assert len(found) == 1, found
    return found[0]


def test_no_secret_in_any_file_or_output(clean_run, judge_server):
    """OPENAI_API_KEY and HF_TOKEN were set to markers for the whole run, and the judge really
    used the key; neither marker is in any file the run produced, nor in its output."""
    auth = {r.headers.get("authorization") for r in judge_server.requests if r.method == "POST"}
    assert auth == {f"Bearer {OPENAI_MARK}"}, auth  # the key was sent where it belongs, only there
    assert "[judge]" in clean_run.proc.stderr() and "judgments" in clean_run.proc.stderr()
    scanned = 0
    for f in clean_run.home.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            scanned += 1
            for mark in (OPENAI_MARK, HF_MARK):
                assert mark.encode() not in data, f"{mark[:12]}... leaked into {f}"
    kinds = {p.suffix for p in clean_run.home.rglob("*") if p.is_file()}
    assert {".sqlite", ".duckdb", ".parquet", ".jsonl", ".json", ".safetensors", ".stderr"} <= kinds, kinds
    figure("secrets: files scanned for 2 markers", completed=1, faults=scanned)


def _loads(path: Path):
    """The checkpoint's s_j file, or None while it is missing or still being written."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, EOFError, RuntimeError):
        return None


def _train(sets):
    return ["train", str(QUICKSTART), "--method", "steper", *sets_args(sets)]


def _logged_steps(log: Path, start: int) -> list[int]:
    """The optimizer steps whose training log line (loss) the stage log got after byte `start`."""
    text = log.read_bytes()[start:].decode(errors="replace")
    return [int(m[1]) for m in re.finditer(r"trl\.steper_bench INFO step (\d+) (\{.*\})", text)
            if "loss" in json.loads(m[2])]


def _kill_training(clean_run, tmp_path: Path, moment: str, sets: list[str], env: dict) -> tuple[Path, list[str], dict]:
    """Copy the clean run without its training, start `train`, SIGKILL it at `moment`:
    checkpoint-complete: checkpoint-2 written whole (trainer_state.json last, s_j file loadable);
    checkpoint-torn: checkpoint-4's folder appears while checkpoint-2 is complete, so the last
    checkpoint is half-written. A kill that came too late for a torn checkpoint is retried."""
    clean_dir = _train_dir(clean_run.run_root)
    for attempt in range(3):
        runs = tmp_path / f"runs{attempt}"
        root = clean_run.copy_to(runs, without=("train",))
        run_sets = [f"runs_dir={runs}", *sets]
        ckpts = root / "train" / clean_dir.name / "checkpoints"
        two, four = ckpts / "checkpoint-2", ckpts / "checkpoint-4"
        if moment == "checkpoint-complete":
            ready = lambda: (two / "trainer_state.json").exists() and _loads(two / "log_variances.pt") is not None  # noqa: E731
        else:
            ready = four.exists
        p = spawn(_train(run_sets), env, tmp_path / "logs", f"train-killed{attempt}")
        kill_when(p, ready, f"{ckpts} ({moment})", timeout=180, poll_s=0.002)
        assert not (ckpts.parent / "train_summary.json").exists()  # really killed before the end
        assert (two / "trainer_state.json").exists()  # the last complete checkpoint
        if moment == "checkpoint-complete" or not (four / "trainer_state.json").exists():
            return root, run_sets, _loads(two / "log_variances.pt")
    pytest.fail("checkpoint-4 was complete before every kill: no torn checkpoint to test")


@pytest.mark.parametrize("moment", ["checkpoint-complete", "checkpoint-torn"])
def test_kill_during_training_resumes_to_the_clean_result(clean_run, tmp_path, moment):
    """Kill `steper-bench train` once checkpoint-2 is complete, or while checkpoint-4 is being
    written; the re-run resumes from checkpoint-2 (the last complete one: it trains steps 3 and 4
    only) and ends with the clean run's sigmas."""
    env = cli_env(tmp_path)
    clean_dir = _train_dir(clean_run.run_root)
    root, sets, saved = _kill_training(clean_run, tmp_path, moment, SMALL, env)
    log = root / "logs" / "train.log"
    before = log.stat().st_size

    again = run_cli(_train(sets), env, tmp_path / "logs", "train-again", timeout=300)
    assert again.popen.returncode == 0, again.stderr()[-4000:]
    no_traceback(again)
    out = _train_dir(root)
    summary = json.loads((out / "train_summary.json").read_text())
    clean = json.loads((clean_dir / "train_summary.json").read_text())
    weights = json.loads((out / "weights.json").read_text())
    clean_weights = json.loads((clean_dir / "weights.json").read_text())
    # Resumed, not retrained: the re-run logged steps 3 and 4 only, from checkpoint-2.
    assert summary["resumed_from"] == "checkpoint-2"
    assert _logged_steps(log, before) == [3, 4]
    # s_j came back from the checkpoint exactly: the history up to step 2 is the saved one.
    assert weights["history"][:2] == saved["history"]
    assert saved["history"] == clean_weights["history"][:2] and len(saved["loss_curve"]) == 2
    assert summary["steps"] == clean["steps"] == 4
    # The resumed student ends where the uninterrupted one did: sigmas and s_j, bit for bit.
    assert summary["sigmas"] == clean["sigmas"]
    assert weights["s"] == clean_weights["s"] and weights["history"] == clean_weights["history"]
    assert not (out / "checkpoints").exists()
    figure(f"SIGKILL during training ({moment})", faults=1, completed=1)


def test_kill_during_eval_leaves_no_duplicate_and_converges(clean_run, tmp_path):
    """Kill `steper-bench run` while it evaluates the trained student, after the teacher's run
    landed in DuckDB; the re-run adds the missing run and equals the clean run's results."""
    runs, db = tmp_path / "runs", tmp_path / "results.duckdb"
    clean_run.copy_to(runs)  # built and trained: only eval is left
    sets = [f"runs_dir={runs}", *SMALL, "eval.models=[teacher, trained:steper]"]
    env = cli_env(tmp_path)
    args = ["run", str(QUICKSTART), "--quiet", "--db", str(db), *sets_args(sets)]
    p = spawn(args, env, tmp_path / "logs", "run-killed", cwd=tmp_path)
    kill_when(p, lambda: "[eval] teacher: done" in p.stderr(), "the teacher's eval run landing", timeout=180)
    partial = db_view(db)
    assert set(partial) == {"silver"} and partial["silver"]["status"] == "finished"

    again = run_cli(args, env, tmp_path / "logs", "run-again", timeout=300, cwd=tmp_path)
    assert again.popen.returncode == 0, again.stderr()[-4000:]
    no_traceback(again)
    assert "[eval] teacher: skipped" in again.stderr()  # the landed run is not redone
    got, want = db_view(db), db_view(clean_run.db)
    for v in got.values():
        assert v["duplicates"] == 0 and v["n"] == len(v["samples"]) == 3 and v["status"] == "finished"
    assert got == want
    lost = sum(want[m]["n"] for m in want) - sum(got.get(m, {"n": 0})["n"] for m in want)
    figure("SIGKILL during eval (DuckDB)", faults=1, completed=1, lost=lost)

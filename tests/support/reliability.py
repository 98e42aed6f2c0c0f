"""Helpers of the reliability suite (tests/reliability): the real CLI in subprocesses,
kill-at-a-moment, the reduced quickstart settings, marker secrets, the judge stand-in, the
clean-run record, DuckDB views, and the figures table (printed by tests/reliability/conftest.py).

Secrets: every subprocess gets OPENAI_API_KEY / HF_TOKEN set to marker values, so any test can
grep what it produced for them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.servers import Reply

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
CLI = [sys.executable, "-m", "steper_bench"]
OPENAI_MARK = "sk-MARKERopenai0123456789SECRETvalue"
HF_MARK = "hf_MARKERhub0123456789SECRETvalue"

# The reduced quickstart every pipeline test shares (same build and train hashes, so a copied run
# folder resumes instead of rebuilding). One method keeps the session inside its time budget.
SMALL = [
    "source.train_limit=20", "source.test_limit=3", "framework.max_new_tokens=12",
    "train.methods=[steper]", "train.max_steps=4", "train.save_steps=2", "train.logging_steps=1",
    "eval.models=[trained:steper]", "eval.include_teacher=true",
]

# -- figures (faults injected, runs completed, records lost) -------------------------------------

FIGURES: dict[str, dict[str, int]] = defaultdict(lambda: {"faults": 0, "completed": 0, "lost": 0})


def figure(case: str, *, faults: int = 0, completed: int = 0, lost: int = 0) -> None:
    f = FIGURES[case]
    f["faults"] += faults
    f["completed"] += completed
    f["lost"] += lost


# -- subprocesses of the real CLI ------------------------------------------------------------------


def sets_args(sets: list[str]) -> list[str]:
    return [x for s in sets for x in ("--set", s)]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(home / "hf"), TOKENIZERS_PARALLELISM="false",
               OPENAI_API_KEY=OPENAI_MARK, HF_TOKEN=HF_MARK, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Proc:
    """A CLI subprocess with its output in files (so a killed one still leaves its log)."""

    popen: subprocess.Popen
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def wait(self, timeout: float = 300) -> int:
        return self.popen.wait(timeout=timeout)


def spawn(args: list[str], env: dict, logs: Path, name: str, cwd: Path | None = None) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.stdout", logs / f"{name}.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen([*CLI, *args], stdout=o, stderr=e, env=env, cwd=cwd or logs, start_new_session=True)
    return Proc(p, out, err)


def run_cli(args: list[str], env: dict, logs: Path, name: str, timeout: float = 300, cwd: Path | None = None) -> Proc:
    p = spawn(args, env, logs, name, cwd)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.popen.pid, signal.SIGKILL)
        p.wait(10)
        raise
    return p


def kill_when(p: Proc, ready: Callable[[], bool], what: str, timeout: float = 120, poll_s: float = 0.01) -> float:
    """SIGKILL the process group we started (its id is the child's PID) as soon as `ready()`
    holds; returns the seconds it ran. Fails if the process ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ready():
            os.killpg(p.popen.pid, signal.SIGKILL)
            p.wait(10)
            return time.monotonic() - t0
        if p.popen.poll() is not None:
            pytest.fail(f"the process ended (rc {p.popen.returncode}) before {what}:\n{p.stderr()[-3000:]}")
        time.sleep(poll_s)
    os.killpg(p.popen.pid, signal.SIGKILL)
    p.wait(10)
    pytest.fail(f"{what} did not happen within {timeout}s:\n{p.stderr()[-3000:]}")


def no_traceback(p: Proc | str) -> None:
    text = p if isinstance(p, str) else p.stderr() + p.stdout()
    assert "Traceback" not in text, text[-4000:]


# -- the judge stand-in ----------------------------------------------------------------------------


def judge_handler(req):
    """An OpenAI-compatible judge: /models for the reachability check, a fixed JSON grade."""
    if req.method == "GET":
        return Reply(json={"object": "list", "data": [{"id": "judge", "object": "model"}]})
    return Reply.text(req, json.dumps({"score": 4, "rationale": "grounded"}))


# -- the clean run -----------------------------------------------------------------------------------


@dataclass
class CleanRun:
    home: Path
    runs: Path
    db: Path
    sets: list[str]
    proc: Proc
    seconds: float
    run_root: Path = field(init=False)

    def __post_init__(self) -> None:
        # runs_dir also holds the indexes shared by run folders (index/) and converted models (models/)
        roots = [p for p in self.runs.iterdir() if p.is_dir() and p.name not in ("index", "models")]
        assert len(roots) == 1, roots
        self.run_root = roots[0]

    def copy_to(self, runs: Path, *, without: tuple[str, ...] = ()) -> Path:
        """The run folder copied into another runs_dir (same build hash), minus some parts."""
        dst = runs / self.run_root.name
        shutil.copytree(self.run_root, dst, ignore=shutil.ignore_patterns(*without))
        return dst


# -- DuckDB views used by several tests ------------------------------------------------------------

STABLE_METRICS = ("em", "f1", "acc", "steps_used", "tokens", "sp_recall", "answer_in_retrieval")


def db_view(db: Path) -> dict:
    """What must equal between a clean and a recovered results file, keyed by method (a trained
    student's run id hashes its folder, which differs between run folders): n, status, the
    sample rows (without latency) and the deterministic metrics."""
    from steper_bench.evaluation import store

    con = store.connect(db, read_only=True)
    try:
        runs = con.execute("SELECT run_id, model, method, n, status FROM runs ORDER BY run_id").fetchall()
        out = {}
        for run_id, model, method, n, status in runs:
            samples = con.execute(
                "SELECT question_id, prediction, em, f1, acc, steps_used, stop_reason, tokens FROM samples "
                "WHERE run_id=? ORDER BY question_id", [run_id]).fetchall()
            dup = con.execute("SELECT count(*) - count(DISTINCT question_id) FROM samples WHERE run_id=?",
                              [run_id]).fetchone()[0]
            metrics = {m: round(v, 9) for m, v in con.execute(
                "SELECT metric, mean FROM metrics WHERE run_id=? ORDER BY metric", [run_id]).fetchall()
                if m in STABLE_METRICS}
            assert method not in out, f"two runs of {method} in {db}"
            out[method] = {"model": Path(model).name, "n": n, "status": status, "samples": samples, "duplicates": dup, "metrics": metrics}
        return out
    finally:
        con.close()

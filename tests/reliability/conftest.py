"""Fixtures of the reliability suite (helpers live in tests/support/reliability.py): the judge
stand-in server, one reduced quickstart run shared by the session (the "clean run" every fault is
compared with). The figures table is printed by tests/conftest.py (it gathers xdist workers' too).
"""

from __future__ import annotations

import time

import pytest
from support.reliability import QUICKSTART, SMALL, CleanRun, cli_env, judge_handler, run_cli, sets_args
from support.servers import scripted_server


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def judge_server():
    with scripted_server(judge_handler) as server:
        yield server


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory, judge_server) -> CleanRun:
    """`steper-bench run` on the reduced quickstart, judge enabled (the marker key is used),
    uninterrupted: the reference every fault case is compared with."""
    home = tmp_path_factory.mktemp("clean")
    runs, db = home / "runs", home / "results.duckdb"
    sets = [f"runs_dir={runs}", *SMALL, "eval.judge.enabled=true", f"eval.judge.base_url={judge_server}",
            "eval.judge.model=judge", "eval.judge.concurrency=4"]
    t0 = time.monotonic()
    p = run_cli(["run", str(QUICKSTART), "--quiet", "--db", str(db), *sets_args(sets)], cli_env(home), home / "logs",
                "run", timeout=400, cwd=home)
    assert p.popen.returncode == 0, p.stderr()[-4000:]
    return CleanRun(home, runs, db, sets, p, time.monotonic() - t0)

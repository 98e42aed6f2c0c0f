"""Judge throughput: concurrency 16 vs 1 against a local server that answers after a fixed
delay (what a remote judge's latency looks like). Goal: >= 10x."""

from __future__ import annotations

import time

import pytest

from steper_bench.cache import RequestCache
from steper_bench.evaluation import store
from steper_bench.evaluation.judge import JudgeSettings, judge_runs
from steper_bench.recipe import validate_recipe
from support.servers import fixed_text, scripted_server

N_QUESTIONS = 32  # one step each: initialization + aggregation = 64 judgments
DELAY_S = 0.4


def _db(path):
    con = store.connect(path)
    samples, steps = [], []
    for i in range(N_QUESTIONS):
        samples.append(dict(run_id="r", question_id=f"q{i}", question=f"Q{i}?", gold=["x"], prediction="x",
                            em=1.0, f1=1.0, acc=1.0, steps_used=1, stop_reason="answered"))
        steps.append(dict(run_id="r", question_id=f"q{i}", step=1, query="q", retrieved_pids=[], new_pids=[],
                          context_pids=[], reasoning="So the answer is: x."))
    store.write_run(con, dict(run_id="r", recipe_name="perf", status="finished"), samples, steps, [])
    con.close()


@pytest.mark.perf
def test_judge_concurrency_speedup(tmp_path, repo_root):
    db = tmp_path / "r.duckdb"
    _db(db)
    recipe = validate_recipe({"name": "perf", "runs_dir": str(tmp_path / "runs"),
                              "source": {"dataset": "hotpotqa", "test_file": str(repo_root / "data/hotpotqa/dev.jsonl")}})
    seconds = {}
    with scripted_server(fixed_text('{"score": 3, "rationale": "ok"}', delay_s=DELAY_S)) as url:
        for c in (1, 16):
            settings = JudgeSettings(model="j", base_url=url, api_key="EMPTY", concurrency=c, max_retries=0)
            t = time.perf_counter()
            s = judge_runs(recipe, db=db, run_ids=["r"], settings=settings, cache=RequestCache(tmp_path / f"c{c}.sqlite"))
            seconds[c] = time.perf_counter() - t
            assert s.ok == 2 * N_QUESTIONS and s.cached == 0
    ratio = seconds[1] / seconds[16]
    print(f"\njudge {2 * N_QUESTIONS} judgments, {DELAY_S}s server delay: concurrency 1 {seconds[1]:.2f}s, "
          f"concurrency 16 {seconds[16]:.2f}s, speedup {ratio:.1f}x")
    assert ratio >= 10

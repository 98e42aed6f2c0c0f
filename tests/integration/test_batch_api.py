"""`api: batch` (OpenAI's Batch interface) for teacher and judge, against a local emulator of the
Files and Batches endpoints over real HTTP (tests/support/batch_emulator.py): a build goes one
batch per step, a re-run submits nothing, a build killed (SIGKILL) while its batch runs collects
that batch from the id stored in the request cache instead of paying for it again, and the judge
sends its verdicts and its repair turns as two batches (lines rejected over response_format go
again without it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from steper_bench.build import build
from steper_bench.recipe import load_recipe
from support.batch_emulator import batch_emulator
from support.reliability import CLI, QUICKSTART, sets_args
from support.servers import Reply, steps_teacher

SETS = [
    "source.train_limit=10",
    "source.test_limit=3",
    "dataset.filter=all",
    "teacher.backend=openai",
    "teacher.model=scripted",
    "teacher.api=batch",
    "teacher.batch_poll_s=0.05",
    "framework.max_steps=2",
]


def _recipe(tmp_path, url):
    return load_recipe(QUICKSTART, [f"runs_dir={tmp_path / 'runs'}", *SETS, f"teacher.base_url={url}"])


def test_a_build_goes_one_batch_per_step_and_a_rerun_submits_nothing(tmp_path):
    with batch_emulator(steps_teacher(2), delay_s=0.1) as (url, state):
        r = _recipe(tmp_path, url)
        s = build(r, progress=False, log=lambda m: None)
        assert s.splits["train"].generated == 10 and s.errors == 0, s.format()
        assert len(state.batches) == 2 and state.lines_answered == 20  # step 1, step 2 (the answer)
        assert all(
            b["status"] == "completed" and b["endpoint"] == "/v1/chat/completions" for b in state.batches.values()
        )
        first = state.files[state.batches["batch-000002"]["input_file_id"]]["data"].decode().splitlines()
        line = json.loads(first[0])
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions" and len(line["custom_id"]) == 64
        assert line["body"]["model"] == "scripted" and line["body"]["messages"][0]["role"] == "user"
        again = build(r, progress=False, log=lambda m: None)
        assert again.requests == 0 and len(state.batches) == 2


def test_killed_while_its_batch_runs_the_build_collects_that_batch(tmp_path):
    with batch_emulator(steps_teacher(2), delay_s=1.5) as (url, state):
        sets = [f"runs_dir={tmp_path / 'runs'}", *SETS, f"teacher.base_url={url}"]
        proc = subprocess.Popen(
            [*CLI, "build", str(QUICKSTART), "--quiet", *sets_args(sets)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not state.batches and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the batch id is in the cache the moment the batch exists
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert [b["status"] for b in state.batches.values()] == ["in_progress"]  # killed mid-batch
        s = build(load_recipe(QUICKSTART, sets), progress=False, log=lambda m: None)
        assert s.splits["train"].generated == 10 and s.errors == 0, s.format()
        assert len(state.batches) == 2 and state.lines_answered == 20  # step 1 collected, not sent again


def _judged_run(tmp_path, repo_root):
    """A results file with run "r": questions Q0?..Q2?, one answered step each (6 judgments:
    two abilities per step); and a recipe to judge it with."""
    from steper_bench.evaluation import store
    from steper_bench.recipe import validate_recipe

    db = tmp_path / "r.duckdb"
    con = store.connect(db)
    samples = [
        {
            "run_id": "r",
            "question_id": f"q{i}",
            "question": f"Q{i}?",
            "gold": ["x"],
            "prediction": "x",
            "em": 1.0,
            "f1": 1.0,
            "acc": 1.0,
            "steps_used": 1,
            "stop_reason": "answered",
        }
        for i in range(3)
    ]
    steps = [
        {
            "run_id": "r",
            "question_id": f"q{i}",
            "step": 1,
            "query": "q",
            "retrieved_pids": [],
            "new_pids": [],
            "context_pids": [],
            "reasoning": "So the answer is: x.",
        }
        for i in range(3)
    ]
    store.write_run(con, {"run_id": "r", "recipe_name": "t", "status": "finished"}, samples, steps, [])
    con.close()
    recipe = validate_recipe(
        {
            "name": "t",
            "runs_dir": str(tmp_path / "runs"),
            "source": {"dataset": "hotpotqa", "test_file": str(repo_root / "data/hotpotqa/dev.jsonl")},
        }
    )
    return db, recipe


def _verdict(req):  # question q0's first verdict is prose: it needs the repair turn
    repaired = req.body["messages"][-1]["role"] == "user" and len(req.body["messages"]) > 2
    if "Q0?" in req.body["messages"][1]["content"] and not repaired:
        return Reply.text(req, "It is fine, I would say.")
    return Reply.text(req, '{"score": 4, "rationale": "ok"}')


def test_the_judge_sends_its_verdicts_then_its_repairs_as_two_batches(tmp_path, repo_root):
    from steper_bench.cache import RequestCache
    from steper_bench.evaluation.judge import JudgeSettings, judge_runs

    db, recipe = _judged_run(tmp_path, repo_root)
    judge = _verdict
    with batch_emulator(judge, delay_s=0.05) as (url, state):
        settings = JudgeSettings(
            model="j", base_url=url, api_key="EMPTY", max_retries=0, api="batch", batch_poll_s=0.05
        )
        s = judge_runs(recipe, db=db, run_ids=["r"], settings=settings, cache=RequestCache(tmp_path / "c.sqlite"))
        assert (s.judged, s.ok, s.failed) == (6, 6, 0)
        assert len(state.batches) == 2 and state.lines_answered == 6 + 2  # q0's two judgments repaired


@pytest.mark.parametrize("rejects", ["every line", "Q1's lines"])
def test_a_batch_judge_without_json_mode_resubmits_the_rejected_lines_without_it(tmp_path, repo_root, rejects):
    """An endpoint that answers response_format with a 400 in the batch's error file: those
    lines go again without it (one more batch), and the repair batch leaves it out from the start."""
    from steper_bench.cache import RequestCache
    from steper_bench.evaluation.judge import JudgeSettings, judge_runs

    db, recipe = _judged_run(tmp_path, repo_root)

    def no_json_mode(req):
        hit = rejects == "every line" or "Q1?" in req.body["messages"][1]["content"]
        if "response_format" in req.body and hit:
            return Reply(status=400, json={"error": {"message": "response_format is not supported by this model",
                                                     "type": "invalid_request_error", "param": "response_format"}})
        return _verdict(req)

    with batch_emulator(no_json_mode, delay_s=0.05) as (url, state):
        settings = JudgeSettings(model="j", base_url=url, api_key="EMPTY", max_retries=0, api="batch", batch_poll_s=0.05)
        s = judge_runs(recipe, db=db, run_ids=["r"], settings=settings, cache=RequestCache(tmp_path / "c.sqlite"))
        sent = [[json.loads(x)["body"] for x in state.files[b["input_file_id"]]["data"].decode().splitlines()]
                for b in sorted(state.batches.values(), key=lambda b: b["id"])]
    assert (s.judged, s.ok, s.failed) == (6, 6, 0), s.errors
    resent = 6 if rejects == "every line" else 2
    assert [len(b) for b in sent] == [6, resent, 2]  # verdicts, the rejected ones again, q0's repairs
    assert all("response_format" in body for body in sent[0])
    assert not any("response_format" in body for batch in sent[1:] for body in batch)
    assert [body["messages"] for body in sent[1]] == [
        body["messages"] for body in sent[0] if rejects == "every line" or "Q1?" in body["messages"][1]["content"]]

"""Bad input found by trying the CLI as a new user would: each case ends in one clear message
(no traceback) and a non-zero exit, and nothing already produced is damaged or reported as a
result. Real CLI subprocesses, real files, real servers on loopback."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support.reliability import QUICKSTART, cli_env, no_traceback, run_cli, sets_args, spawn
from support.servers import Reply, free_port, scripted_server

from steper_bench.evaluation import store

FAST = ["source.train_limit=12", "source.test_limit=3", "eval.models=[]"]


def _env(tmp_path: Path, **extra) -> dict:
    return cli_env(tmp_path, **extra)


def _cli(tmp_path, args, name, **env):
    return run_cli(args, _env(tmp_path, **env), tmp_path / "logs", name, cwd=tmp_path, timeout=180)


def _clear_failure(p, *needles: str) -> str:
    text = p.stderr() + p.stdout()
    assert p.popen.returncode not in (0, None), text[-3000:]
    no_traceback(p)
    for n in needles:
        assert n in text, (n, text[-3000:])
    return text


# -- endpoints ---------------------------------------------------------------------------------------------


def test_dead_student_endpoint_fails_in_seconds_and_stores_nothing(tmp_path):
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    p = _cli(tmp_path, ["eval", str(QUICKSTART), "--model", f"openai:foo@http://127.0.0.1:{port}/v1",
                        "--db", "r.duckdb", *sets_args(FAST)], "dead")
    _clear_failure(p, f"cannot reach the endpoint http://127.0.0.1:{port}/v1", "--model openai:foo")
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "r.duckdb").exists() or not _finished_runs(tmp_path / "r.duckdb")


def _finished_runs(db: Path) -> list:
    con = store.connect(db, read_only=True)
    try:
        return con.execute("SELECT run_id FROM runs WHERE status='finished'").fetchall()
    finally:
        con.close()


def test_a_run_whose_questions_all_failed_is_stored_failed_hidden_and_exits_non_zero(tmp_path):
    def handler(req):
        if req.path.endswith("/models"):
            return Reply(json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        return Reply(status=500)

    with scripted_server(handler) as server:
        p = _cli(tmp_path, ["eval", str(QUICKSTART), "--model", f"openai:m@{server}", "--db", "r.duckdb",
                            *sets_args([*FAST, "eval.max_new_tokens=4", "eval.max_retries=0"])], "allfail")
    _clear_failure(p, "all 3 questions failed", "stored as failed run")
    con = store.connect(tmp_path / "r.duckdb", read_only=True)
    try:
        assert con.execute("SELECT status, n FROM runs").fetchall() == [("failed", 3)]
        from steper_bench.leaderboard_app import queries

        assert queries.run_metrics(con, queries.Filters()).empty  # hidden by default
        assert len(queries.run_metrics(con, queries.Filters(include_failed=True))) == 1
    finally:
        con.close()


MALFORMED = {"not-json": b"<html>upstream error</html>", "no-choices": b'{"object": "text_completion"}',
             "wrong-shape": b'{"choices": "no"}'}


def _malformed(body: bytes):
    def handler(req):
        if req.method == "GET":
            return Reply(json={"object": "list", "data": [{"id": "m", "object": "model"}]})
        return Reply(raw=body)  # 200, valid HTTP, but not an answer

    return handler


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_teacher_answering_malformed_200s_fails_the_build_naming_the_endpoint(tmp_path, kind):
    with scripted_server(_malformed(MALFORMED[kind])) as server:
        sets = [*FAST, f"runs_dir={tmp_path / 'runs'}", "teacher.backend=openai", "teacher.model=m",
                f"teacher.base_url={server}", "teacher.max_retries=1", "dataset.filter=all"]
        p = _cli(tmp_path, ["build", str(QUICKSTART), "-q", *sets_args(sets)], f"malformed-{kind}")
        posts = sum(r.method == "POST" for r in server.requests)
    text = _clear_failure(p, "all 12 questions failed", "malformed response", f"from {server.base_url}",
                          "(after 2 attempts)")
    assert posts == 12 * 2  # each retried like a 5xx, then failed
    assert "AttributeError" not in text
    assert not list((tmp_path / "runs").glob("*/dataset"))  # no empty dataset reported as a success


def test_a_student_answering_non_json_fails_the_eval_naming_the_endpoint(tmp_path):
    with scripted_server(_malformed(MALFORMED["not-json"])) as server:
        p = _cli(tmp_path, ["eval", str(QUICKSTART), "--model", f"openai:m@{server}", "--db", "r.duckdb",
                            *sets_args([*FAST, "eval.max_retries=1"])], "malformed-student")
    _clear_failure(p, "all 3 questions failed", "malformed response: not JSON", f"from {server.base_url}")


def test_unknown_model_form_lists_the_accepted_forms(tmp_path):
    p = _cli(tmp_path, ["eval", str(QUICKSTART), "--model", "bogus:thing", *sets_args(FAST)], "bogus")
    _clear_failure(p, "not a model spec; accepted forms:", "openai:MODEL@BASE_URL", "trained:METHOD")


# -- data files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, reason", [
    ("", "the file is empty"),
    ("not json\n{broken\n", "invalid JSON 2"),
    ('{"foo": 1}\n{"bar": 2}\n', "missing field"),
])
def test_build_over_a_file_without_usable_records_fails_and_says_why(tmp_path, content, reason):
    bad = tmp_path / "train.jsonl"
    bad.write_text(content)
    p = _cli(tmp_path, ["build", str(QUICKSTART), "-q", *sets_args([*FAST, f"source.train_file={bad}",
                                                                    f"runs_dir={tmp_path / 'runs'}"])], "empty")
    _clear_failure(p, f"0 usable records in {bad}", reason)
    assert not list((tmp_path / "runs").glob("*/dataset/first"))  # no 0-row dataset left to train on


def test_train_refuses_an_empty_dataset(tmp_path):
    empty = tmp_path / "data"
    for config in ("first", "mid", "final", "vanilla_kd"):
        (empty / config).mkdir(parents=True)
    p = _cli(tmp_path, ["train", str(QUICKSTART), "--data", str(empty), "--method", "steper"], "train-empty")
    _clear_failure(p, "no train examples in configs first, mid, final")


def test_skipped_records_are_on_the_console_and_in_build_log(tmp_path, repo_root):
    lines = (repo_root / "data" / "hotpotqa" / "train.jsonl").read_text().splitlines()[:14]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(lines[:6] + ["{not json", '{"_id": "x"}'] + lines[6:]) + "\n")
    p = _cli(tmp_path, ["build", str(QUICKSTART), "-q", *sets_args([f"source.train_file={mixed}", "source.test_limit=3",
                                                                    f"runs_dir={tmp_path / 'runs'}"])], "mixed")
    assert p.popen.returncode == 0, p.stderr()[-2000:]
    expect = f"train: skipped 2 malformed record(s) in {mixed}: invalid JSON 1, missing field 'question' 1"
    assert expect in p.stderr()
    [log] = (tmp_path / "runs").glob("*/build.log")
    assert expect in log.read_text()


# -- damaged files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_a_damaged_request_cache_is_named_with_what_deleting_it_costs(tmp_path, damage):
    args = ["build", str(QUICKSTART), "-q", *sets_args([*FAST, f"runs_dir={tmp_path / 'runs'}"])]
    assert _cli(tmp_path, args, "first").popen.returncode == 0
    cache = tmp_path / "runs" / "cache.sqlite"
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 3] if damage == "truncate" else os.urandom(len(data)))
    for p in (tmp_path / "runs").glob("cache.sqlite-*"):
        p.unlink()
    for traj in (tmp_path / "runs").glob("*/trajectories/*.jsonl"):
        traj.unlink()  # the re-run needs the cache
    p = _cli(tmp_path, args, "damaged")
    _clear_failure(p, f"the request cache {cache} is damaged", "delete it", "requested again")


def test_a_damaged_results_file_is_detected_and_never_written(tmp_path):
    db = tmp_path / "r.duckdb"
    con = store.connect(db)
    for i in range(3):
        samples = [dict(run_id=f"r{i}", question_id=f"q{j}", question="Q?", gold=["a"], prediction="a", em=1.0,
                        f1=1.0, acc=1.0, steps_used=1, stop_reason="answered") for j in range(2000)]
        store.write_run(con, dict(run_id=f"r{i}", model="m", method="steper", dataset="hotpotqa", status="finished",
                                  n=len(samples)), samples, [], [])
    con.execute("CHECKPOINT")
    con.close()
    args = ["eval", str(QUICKSTART), "--model", "supporting-facts", "--db", "r.duckdb",
            *sets_args([*FAST, f"runs_dir={tmp_path / 'runs'}"])]
    data = bytearray(db.read_bytes())
    for off in range(12 * 1024, len(data) - 4096, 256 * 1024):  # every block's start after the header
        data[off:off + 1024] = os.urandom(1024)
    db.write_bytes(bytes(data))
    before = db.read_bytes()
    p = _cli(tmp_path, ["report", "--db", "r.duckdb"], "report")
    _clear_failure(p, f"the results file {db.name}", "is damaged")
    p = _cli(tmp_path, [*args, "--force"], "eval-again")
    _clear_failure(p, "is damaged", "nothing was written to it")
    assert db.read_bytes() == before


# -- the Hub ----------------------------------------------------------------------------------------------


def _built(tmp_path) -> list[str]:
    args = ["build", str(QUICKSTART), "-q", *sets_args([*FAST, f"runs_dir={tmp_path / 'runs'}"])]
    assert _cli(tmp_path, args, "build").popen.returncode == 0
    return sets_args([*FAST, f"runs_dir={tmp_path / 'runs'}"])


def test_publish_offline_or_unreachable_is_one_line_naming_the_endpoint(tmp_path):
    sets = _built(tmp_path)
    p = _cli(tmp_path, ["publish", str(QUICKSTART), "--repo-id", "me/x", *sets], "offline", HF_HUB_OFFLINE="1")
    _clear_failure(p, "HF_HUB_OFFLINE is set: publishing needs the Hub at")
    port = free_port()
    p = _cli(tmp_path, ["publish", str(QUICKSTART), "--repo-id", "me/x", *sets], "unreachable", HF_HUB_OFFLINE="0",
             HF_ENDPOINT=f"http://127.0.0.1:{port}")
    _clear_failure(p, f"cannot reach the Hub at http://127.0.0.1:{port}")
    p = _cli(tmp_path, ["publish", str(QUICKSTART), "--repo-id", "me/x", *sets], "no-token", HF_TOKEN="")
    _clear_failure(p, "no Hugging Face token", "hf auth login")


# -- two builds at once, console text --------------------------------------------------------------------


def test_a_second_build_of_the_same_recipe_waits_for_the_first(tmp_path):
    """The slow teacher keeps the first build busy; the second says it waits, then has nothing to do."""

    def handler(req):
        if req.path.endswith("/models"):
            return Reply(json={"object": "list", "data": []})
        return Reply.text(req, "So the answer is: yes.", delay_s=0.8)

    with scripted_server(handler) as server:
        sets = sets_args([*FAST, f"runs_dir={tmp_path / 'runs'}", "teacher.backend=openai", "teacher.model=m",
                          f"teacher.base_url={server}", "dataset.filter=all", "teacher.concurrency=2"])
        env = _env(tmp_path)
        first = spawn(["build", str(QUICKSTART), "-q", *sets], env, tmp_path / "logs", "b1", cwd=tmp_path)
        time.sleep(3)
        second = spawn(["build", str(QUICKSTART), "-q", *sets], env, tmp_path / "logs", "b2", cwd=tmp_path)
        assert first.wait(120) == 0 and second.wait(120) == 0, second.stderr()[-2000:]
        calls = [r for r in server.requests if not r.path.endswith("/models")]
    assert "another build of this recipe is running (pid" in second.stderr()
    assert "12 already built, 0 to run" in second.stderr()
    [journal] = (tmp_path / "runs").glob("*/trajectories/train.jsonl")
    assert len(journal.read_text().splitlines()) == 12 and len(calls) == 12  # each question asked once


def test_console_text_keeps_brackets_and_needs_no_git(tmp_path):
    p = _cli(tmp_path, ["validate", str(QUICKSTART), "--set", "dataset.splits=[dev]"], "brackets")
    _clear_failure(p, "(--set dataset.splits=[dev]): dataset.splits.0: 'dev' is not allowed")
    args = ["eval", str(QUICKSTART), "--model", "supporting-facts", "--db", "r.duckdb",
            *sets_args([*FAST, f"runs_dir={tmp_path / 'runs'}"])]
    p = _cli(tmp_path, args, "nogit", GIT_CEILING_DIRECTORIES=str(tmp_path.parent))  # not inside any checkout
    assert p.popen.returncode == 0, p.stderr()[-2000:]
    text = p.stderr() + p.stdout()
    assert "fatal:" not in text and "Generating train split" not in text and "Overwriting default" not in text

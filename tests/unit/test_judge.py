"""The LLM judge against the scripted local OpenAI-compatible server: parsing, repair retry,
failure accounting, cache, response_format fallback, pairwise order swap and aggregation."""

from __future__ import annotations

import json

import pytest

from steper_bench.cache import RequestCache
from steper_bench.evaluation import store
from steper_bench.evaluation.judge import (
    RUBRIC_VERSION,
    JudgeSettings,
    judge_pairwise,
    judge_runs,
    parse_verdict,
    rubric,
)
from steper_bench.evaluation.abilities import graded_steps
from steper_bench.reasoning.frameworks import get_framework
from steper_bench.recipe import validate_recipe
from support.servers import Reply, scripted_server

# question id -> number of steps
CHAINS = {"q0": 1, "q1": 3, "q2": 2}


def _write_run(con, run_id: str, marker: str) -> None:
    samples, steps, paras = [], [], []
    for qid, n in CHAINS.items():
        samples.append(dict(run_id=run_id, question_id=qid, question=f"Who {qid}?", type="bridge", gold=["Paris"],
                            prediction="Paris", em=1.0, f1=1.0, acc=1.0, steps_used=n, stop_reason="answered",
                            latency_s=0.1, tokens=5, sp_recall=1.0, answer_in_retrieval=1.0))
        for s in range(1, n + 1):
            text = f"{marker} step {s}." + (" So the answer is: Paris." if s == n else "")
            steps.append(dict(run_id=run_id, question_id=qid, step=s, query="q", retrieved_pids=[f"{qid}-{s}"],
                              new_pids=[f"{qid}-{s}"], context_pids=[f"{qid}-{i}" for i in range(1, s + 1)],
                              reasoning=text, latency_s=0.1, tokens=3, sp_recall=1.0, error=None))
            paras.append(dict(run_id=run_id, question_id=qid, pid=f"{qid}-{s}", title=f"Title {s}",
                              text=f"Paragraph {s} of {qid}.", is_supporting=s == 1))
    run = dict(run_id=run_id, recipe_name="judge-test", model=marker, method="steper", dataset="hotpotqa",
               split="test", status="finished", n=len(CHAINS))
    store.write_run(con, run, samples, steps, paras)


@pytest.fixture
def setup(tmp_path, repo_root):
    db = tmp_path / "results.duckdb"
    con = store.connect(db)
    _write_run(con, "ra", "RUN-A")
    _write_run(con, "rb", "RUN-B")
    con.close()
    recipe = validate_recipe({"name": "judge-test", "runs_dir": str(tmp_path / "runs"),
                              "source": {"dataset": "hotpotqa", "test_file": str(repo_root / "data/hotpotqa/dev.jsonl")}})
    return db, recipe, RequestCache(tmp_path / "cache.sqlite")


def _settings(url: str, **kw) -> JudgeSettings:
    return JudgeSettings(**{"model": "judge-x", "base_url": url, "api_key": "EMPTY", "concurrency": 4,
                            "timeout_s": 10, "max_retries": 0, **kw})


def _n_judgments() -> int:
    return sum(len(graded_steps(get_framework("ircot"), n)) for n in CHAINS.values())


def test_parse_verdict_lenient():
    assert parse_verdict('{"score": 4, "rationale": "fine"}', "score") == (4, "fine")
    assert parse_verdict('Sure!\n```json\n{"score": "5", "rationale": "x"}\n```', "score") == (5, "x")
    assert parse_verdict('Here: {"score": 2.0} done', "score")[0] == 2
    assert parse_verdict('score: 3 because ...', "score")[0] == 3  # no JSON, but a clear field
    assert parse_verdict('{"winner": "b", "rationale": "r"}', "pairwise") == ("B", "r")
    for bad in ('{"score": 7}', '{"score": 3.5}', "I cannot help with that.", "", '{"score": "high"}'):
        with pytest.raises(ValueError):
            parse_verdict(bad, "score")
    with pytest.raises(ValueError):
        parse_verdict('{"winner": "C"}', "pairwise")


def test_rubric_is_versioned_and_says_it_is_ours():
    text = (rubric()["system"], rubric()["initialization"])
    assert all(text)
    from steper_bench.evaluation.judge import RUBRIC_FILE

    head = RUBRIC_FILE.read_text()
    assert head.startswith(f"# {RUBRIC_VERSION}") and "OUR CHOICE" in head


def test_scores_stored_per_step_with_metrics_and_cache(setup):
    db, recipe, cache = setup

    def handler(req):
        body = req.body
        assert body["temperature"] == 0 and body["response_format"] == {"type": "json_object"}
        user = body["messages"][-1]["content"]
        score = {"initialization": 5, "expansion": 3, "aggregation": 4}[user.split("Ability to grade: ")[1].split()[0]]
        return Reply.text(req, json.dumps({"score": score, "rationale": "because"}))

    with scripted_server(handler) as server:
        s = judge_runs(recipe, db=db, run_ids=["ra", "rb"], settings=_settings(server), cache=cache)
        assert server.count == 2 * _n_judgments()
        assert (s.judged, s.ok, s.failed, s.cached) == (2 * _n_judgments(), 2 * _n_judgments(), 0, 0)
        assert s.means["ra"] == {"initialization": 5.0, "expansion": 3.0, "aggregation": 4.0}
        again = judge_runs(recipe, db=db, run_ids=["ra"], settings=_settings(server), cache=cache)
        assert server.count == 2 * _n_judgments()  # all from the cache
        assert again.cached == _n_judgments()
    con = store.connect(db, read_only=True)
    rows = con.execute("SELECT ability, step, score, status, judge_model, rubric_version FROM judgments "
                       "WHERE run_id='ra' AND question_id='q1' ORDER BY step, ability").fetchall()
    assert rows == [("initialization", 1, 5, "ok", "judge-x", RUBRIC_VERSION),
                    ("expansion", 2, 3, "ok", "judge-x", RUBRIC_VERSION),
                    ("aggregation", 3, 4, "ok", "judge-x", RUBRIC_VERSION)]
    assert con.execute("SELECT count(*) FROM judgments").fetchone()[0] == 2 * _n_judgments()  # re-judging replaced
    m = store.read_metrics(con, "ra")
    assert m["judge_expansion"]["n"] == 1 and m["judge_initialization"]["n"] == 3
    con.close()


def test_repair_retry_then_failures_are_counted_not_dropped(setup):
    db, recipe, cache = setup
    repair_text = rubric()["repair"]

    def handler(req):
        msgs = req.body["messages"]
        qid_step = msgs[1]["content"]
        repaired = msgs[-1]["content"] == repair_text
        if "Who q0?" in qid_step:  # q0: garbage, then valid JSON on the repair turn
            return Reply.text(req, '{"score": 2, "rationale": "fixed"}' if repaired else "I think it is good")
        if "Who q1?" in qid_step:  # q1: garbage twice -> failed
            return Reply.text(req, "As an AI I cannot grade this.")
        return Reply(status=500, json={"error": {"message": "boom"}})  # q2: transport failure

    with scripted_server(handler) as server:
        s = judge_runs(recipe, db=db, run_ids=["ra"], settings=_settings(server), cache=cache)
    assert s.judged == _n_judgments()
    assert s.ok == 2 and s.failed == _n_judgments() - 2
    con = store.connect(db, read_only=True)
    rows = dict(((q, a, st), (sc, status, err)) for q, a, st, sc, status, err in con.execute(
        "SELECT question_id, ability, step, score, status, error FROM judgments WHERE run_id='ra'").fetchall())
    assert rows[("q0", "initialization", 1)][:2] == (2, "ok")
    sc, status, err = rows[("q1", "expansion", 2)]
    assert sc is None and status == "failed" and "invalid JSON after the repair retry" in err
    sc, status, err = rows[("q2", "aggregation", 2)]
    assert sc is None and status == "failed" and "500" in err
    m = store.read_metrics(con, "ra")
    assert m["judge_failed"]["mean"] == pytest.approx(s.failed / s.judged)
    assert m["judge_initialization"] == {"mean": 2.0, "ci_low": 2.0, "ci_high": 2.0, "n": 1}  # failures not zeros
    con.close()
    assert cache.stats()["failures"] == s.failed  # failures recorded in the cache's failure table
    assert len(cache) == 2  # only the successes were cached


def test_response_format_rejected_falls_back(setup):
    db, recipe, cache = setup

    def handler(req):
        if "response_format" in req.body:
            return Reply(status=400, json={"error": {"message": "response_format is not supported"}})
        return Reply.text(req, '{"score": 3, "rationale": "r"}')

    with scripted_server(handler) as server:
        s = judge_runs(recipe, db=db, run_ids=["ra"], settings=_settings(server, concurrency=1), cache=cache)
    assert s.failed == 0 and s.means["ra"]["aggregation"] == 3.0


def test_pairwise_swaps_order_and_ties_inconsistent_verdicts(setup):
    db, recipe, cache = setup

    def content_judge(req):  # prefers RUN-A whichever slot it is in: consistent across the swap
        user = req.body["messages"][-1]["content"]
        a_block = user.split("Response A:")[1].split("Response B:")[0]
        return Reply.text(req, json.dumps({"winner": "A" if "RUN-A" in a_block else "B", "rationale": "r"}))

    with scripted_server(content_judge) as server:
        s = judge_pairwise(recipe, db=db, run_a="ra", run_b="rb", settings=_settings(server), cache=cache)
        assert server.count == 2 * _n_judgments()  # both orders; expansion only where a chain has one
        first = server.requests[0].body["messages"][-1]["content"]
        orders = {("RUN-A" in r.body["messages"][-1]["content"].split("Response B:")[0].split("Response A:")[1])
                  for r in server.requests}
        assert orders == {True, False}  # each side was shown first
    assert "Response A:" in first
    assert s.counts["aggregation"] == {"win": 3, "tie": 0, "loss": 0, "failed": 0}

    with scripted_server(lambda req: Reply.text(req, '{"winner": "A", "rationale": "first"}')) as server:
        s = judge_pairwise(recipe, db=db, run_a="ra", run_b="rb", settings=_settings(server, model="biased"), cache=cache)
    assert s.counts["initialization"] == {"win": 0, "tie": 3, "loss": 0, "failed": 0}  # position bias = tie
    assert s.counts["expansion"] == {"win": 0, "tie": 1, "loss": 0, "failed": 0}
    con = store.connect(db, read_only=True)
    rows = con.execute("SELECT judge_model, verdict, verdict_ab, verdict_ba, count(*) FROM pairwise "
                       "GROUP BY ALL ORDER BY ALL").fetchall()
    assert rows == [("biased", "tie", "A", "A", 7), ("judge-x", "a", "A", "B", 7)]
    con.close()


def test_unknown_run_is_a_clear_error(setup):
    db, recipe, cache = setup
    with pytest.raises(store.StoreError, match="no run nope"):
        judge_runs(recipe, db=db, run_ids=["nope"], settings=_settings("http://127.0.0.1:9/v1"), cache=cache)


def test_graded_steps_follow_each_framework():
    ircot = get_framework("ircot")
    assert graded_steps(ircot, 1) == [("initialization", 1), ("aggregation", 1)]
    assert graded_steps(ircot, 4) == [("initialization", 1), ("expansion", 2), ("expansion", 3), ("aggregation", 4)]
    assert graded_steps(get_framework("self-ask"), 3) == graded_steps(ircot, 3)
    # one generation holds the whole chain: only aggregation is graded
    assert graded_steps(get_framework("single-step"), 1) == [("aggregation", 1)]
    assert graded_steps(get_framework("no-retrieval"), 1) == [("aggregation", 1)]


def test_what_counts_as_an_endpoint_without_json_mode():
    from steper_bench.evaluation.judge import _json_mode_rejected

    assert _json_mode_rejected('HTTP 400 in the batch: {"error": {"message": "response_format is not supported"}}')
    assert _json_mode_rejected('HTTP 400 in the batch: {"error": {"message": "JSON mode is unavailable"}}')
    assert _json_mode_rejected("batch batch-000001 failed: invalid_request: response_format: unknown field")
    assert not _json_mode_rejected('HTTP 400 in the batch: {"error": {"message": "max_tokens is too large"}}')
    assert not _json_mode_rejected('HTTP 500 in the batch: {"error": {"message": "json decoder crashed"}}')
    assert not _json_mode_rejected("batch batch-000001 expired without an answer to this request")

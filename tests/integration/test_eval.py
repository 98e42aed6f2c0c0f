"""`steper-bench eval` end to end on ~8 shipped-sample questions: the multi-step loop scored by
lm-eval, stored in DuckDB; local tiny model, the same model behind a real `transformers serve`,
the supporting-facts silver teacher; and the judge against that real server."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from steper_bench.cli import app
from steper_bench.evaluation import evaluate, judge_runs, parse_model_spec
from steper_bench.evaluation import store
from steper_bench.evaluation.judge import JudgeSettings
from steper_bench.evaluation.evaluate import _sigma_rows
from steper_bench.evaluation.models import describe
from steper_bench.generation.local import weights_fingerprint
from steper_bench.metrics import extract_answer, score
from steper_bench.recipe import RecipeError, load_recipe
from support.servers import scripted_server, serve_transformers

N = 8
# Small prompts and few steps keep the tiny model fast; the loop is the same.
FAST = ["corpus.max_paragraphs=6", "framework.paragraph_chars=300", "framework.max_steps=2",
        "eval.max_new_tokens=12", f"eval.limit={N}"]
SCORES = ("em", "f1", "acc")


@pytest.fixture(scope="module")
def env(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("eval")
    recipe = load_recipe(repo_root / "recipes" / "quickstart.yaml", [f"runs_dir={tmp / 'runs'}", *FAST])
    return recipe, tmp / "results.duckdb", repo_root


@pytest.fixture(scope="module")
def silver(env):
    recipe, db, _ = env
    return evaluate(recipe, model="supporting-facts", db=db, progress=False)


def _table(db, sql, *args):
    con = store.connect(db, read_only=True)
    try:
        return con.execute(sql, list(args)).fetchall()
    finally:
        con.close()


def _check_against_lm_eval(res, db):
    """Each sample's EM / F1 / Acc, recomputed here with steper_bench.metrics from the stored
    prediction and gold, equal both DuckDB's and lm-eval's logged values; the stored prediction
    is lm-eval's and the answer the loop's last step states; stored means equal lm-eval's
    aggregates; every stored aggregate is recomputed from the samples table."""
    rows = _table(db, "SELECT question_id, prediction, gold, em, f1, acc FROM samples WHERE run_id=?", res.run_id)
    assert len(rows) == res.n == N
    logged = res.lm_eval["samples"]
    assert {r[0] for r in rows} == set(logged)
    last_step = dict(_table(db, "SELECT question_id, reasoning FROM steps WHERE run_id=? "
                                "QUALIFY row_number() OVER (PARTITION BY question_id ORDER BY step DESC) = 1", res.run_id))
    for qid, pred, gold, em, f1, acc in rows:
        again = score(pred, json.loads(gold))
        assert again == {"em": em, "f1": f1, "acc": acc}, qid
        assert again == {m: logged[qid][m] for m in SCORES}, qid
        assert pred == logged[qid]["prediction"] == (extract_answer(last_step.get(qid)) or ""), qid
    for m in SCORES:
        assert res.metrics[m]["mean"] == pytest.approx(res.lm_eval["results"][f"{m},none"])
    stored = {m: (a, lo, hi, n) for m, a, lo, hi, n in _table(
        db, "SELECT metric, mean, ci_low, ci_high, n FROM metrics WHERE run_id=?", res.run_id)}
    for m in ("em", "f1", "acc", "steps_used", "latency_s", "sp_recall", "answer_in_retrieval"):
        values = np.array([v for (v,) in _table(db, f"SELECT {m} FROM samples WHERE run_id=? AND {m} IS NOT NULL", res.run_id)])
        again = store.bootstrap_mean(values)
        assert stored[m] == pytest.approx((again["mean"], again["ci_low"], again["ci_high"], again["n"]))
    steps = _table(db, "SELECT question_id, count(*) FROM steps WHERE run_id=? GROUP BY 1", res.run_id)
    used = dict(_table(db, "SELECT question_id, steps_used FROM samples WHERE run_id=?", res.run_id))
    assert dict(steps) == used


def test_silver_matches_lm_eval_and_score_command(env, silver, tmp_path):
    recipe, db, repo_root = env
    _check_against_lm_eval(silver, db)
    assert silver.method == "silver" and not silver.skipped_existing
    # where the time went, build's phases: the loop (retrieval, generation) is not counted again
    # inside scoring, so the phases add up to at most the whole eval
    assert set(silver.timings) == {"load", "index", "model_load", "retrieval", "generation", "scoring", "writing"}
    assert silver.timings["retrieval"] > 0 and silver.timings["generation"] > 0
    assert sum(silver.timings.values()) <= silver.seconds
    # `steper-bench score` on the same predictions gives the same numbers
    samples = _table(db, "SELECT question_id, prediction FROM samples WHERE run_id=?", silver.run_id)
    ids = {q for q, _ in samples}
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(line + "\n" for line in (repo_root / "data/hotpotqa/dev.jsonl").read_text().splitlines()
                            if line.strip() and json.loads(line)["_id"] in ids))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": q, "prediction": p}) + "\n" for q, p in samples))
    out = CliRunner().invoke(app, ["score", "--dataset", "hotpotqa", "--gold", str(gold), "--predictions", str(preds)])
    assert out.exit_code == 0, out.output
    scored = json.loads(out.stdout.strip().splitlines()[-1])
    assert scored["n"] == N
    for m in SCORES:
        assert scored[m] == pytest.approx(silver.metrics[m]["mean"])


def test_silver_acc_is_one_where_support_was_retrieved(env, silver):
    _, db, _ = env
    rows = _table(db, "SELECT acc, sp_recall, answer_in_retrieval, stop_reason FROM samples WHERE run_id=?", silver.run_id)
    full = [r for r in rows if r[1] == 1.0]
    assert full, "no question had all its supporting paragraphs retrieved"
    assert all(acc == 1.0 for acc, *_ in full)
    # step-level recall never decreases along a chain, and the last step's equals the sample's
    per_q = {}
    for qid, step, rec in _table(db, "SELECT question_id, step, sp_recall FROM steps WHERE run_id=? ORDER BY 1, 2", silver.run_id):
        per_q.setdefault(qid, []).append(rec)
    assert all(r == sorted(r) for r in per_q.values())
    last = dict(_table(db, "SELECT question_id, sp_recall FROM samples WHERE run_id=?", silver.run_id))
    assert {q: r[-1] for q, r in per_q.items()} == last


def test_rerun_skips_then_force_replaces(env, silver):
    recipe, db, _ = env
    again = evaluate(recipe, model="supporting-facts", db=db, progress=False)
    assert again.skipped_existing and again.run_id == silver.run_id and again.metrics["em"] == silver.metrics["em"]
    forced = evaluate(recipe, model="supporting-facts", db=db, progress=False, force=True)
    assert forced.run_id == silver.run_id and not forced.skipped_existing
    counts = _table(db, "SELECT (SELECT count(*) FROM runs WHERE run_id=$1), (SELECT count(*) FROM samples WHERE run_id=$1), "
                        "(SELECT count(DISTINCT (question_id, step)) = count(*) FROM steps WHERE run_id=$1)", silver.run_id)
    assert counts == [(1, N, True)]


@pytest.mark.slow
def test_tiny_local_and_served_and_judge(env, tiny_model_dir, tmp_path):
    recipe, db, _ = env
    local = evaluate(recipe, model=str(tiny_model_dir), db=db, progress=False)
    _check_against_lm_eval(local, db)
    assert local.method == "base"
    revision = _table(db, "SELECT model_revision FROM runs WHERE run_id=?", local.run_id)[0][0]
    assert revision == f"files:{weights_fingerprint(tiny_model_dir)}" and len(revision) > len("files:")
    tokens = _table(db, "SELECT sum(tokens) FROM steps WHERE run_id=?", local.run_id)[0][0]
    assert tokens > 0
    with serve_transformers(tiny_model_dir) as url:
        served = evaluate(recipe, model=f"openai:{tiny_model_dir}@{url}", db=db, progress=False)
        _check_against_lm_eval(served, db)
        assert served.run_id != local.run_id
        backends = dict(_table(db, "SELECT run_id, backend FROM runs"))
        assert backends[served.run_id] == "openai" and backends[local.run_id] == "transformers"
        # the judge against the same real server: a random tiny model cannot write the JSON, so
        # every judgment must come back failed, stored and counted (never a zero score). It goes
        # through a loopback relay that records how many requests were in flight at once.
        relay = _Relay(url)
        with scripted_server(relay) as relay_url:
            settings = JudgeSettings(model=str(tiny_model_dir), base_url=relay_url, api_key="EMPTY", concurrency=4,
                                     timeout_s=60, max_retries=0, paragraph_chars=200, max_tokens=16)
            from steper_bench.cache import RequestCache

            s = judge_runs(recipe, db=db, run_ids=[served.run_id], settings=settings,
                           cache=RequestCache(tmp_path / "c.sqlite"))
    # (a failed reply gets one repair request, so there are up to two requests per judgment)
    assert s.judged <= relay.forwarded <= 2 * s.judged and 1 < relay.max_in_flight <= 4  # concurrent, bounded
    print(f"judge requests in flight at once: at most {relay.max_in_flight} (concurrency 4)")
    n_steps = _table(db, "SELECT count(*) FROM steps WHERE run_id=?", served.run_id)[0][0]
    assert s.judged >= N and s.judged <= n_steps + N
    assert s.ok + s.failed == s.judged
    status = dict(_table(db, "SELECT status, count(*) FROM judgments WHERE run_id=? GROUP BY 1", served.run_id))
    assert status.get("failed", 0) == s.failed and status.get("ok", 0) == s.ok
    assert _table(db, "SELECT count(*) FROM judgments WHERE status='failed' AND score IS NOT NULL")[0][0] == 0
    assert s.failed > 0, "a random 2-layer model wrote valid verdict JSON?"
    print(f"judge on transformers serve: {s.judged} judgments, {s.failed} failed, e.g. {s.errors[0]}")
    m = dict(_table(db, "SELECT metric, mean FROM metrics WHERE run_id=?", served.run_id))
    assert m["judge_failed"] == pytest.approx(s.failed / s.judged)


class _Relay:
    """A scripted_server handler forwarding to a real server; counts requests in flight."""

    def __init__(self, target: str):
        self.target, self.lock = target.rstrip("/"), threading.Lock()
        self.in_flight = self.max_in_flight = self.forwarded = 0

    def __call__(self, req):
        from support.servers import Reply

        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            r = httpx.post(self.target + req.path.removeprefix("/v1"), json=req.body, timeout=60,
                           headers={"authorization": req.headers.get("authorization", "")})
            return Reply(status=r.status_code, raw=r.content)
        finally:
            with self.lock:
                self.in_flight -= 1
                self.forwarded += 1


def _fake_trained(folder, method: str, train_hash: str = "abc123"):
    """The files training writes that eval reads (no weights: enough for describe and sigma)."""
    folder.mkdir(parents=True)
    (folder / "train_summary.json").write_text(json.dumps({"method": method, "base_model": "tiny", "train_hash": train_hash}))
    weighting = {"steper": "difficulty"}.get(method, "uniform")
    kinds = ("first", "mid", "final") if method != "vanilla-kd" else ("vanilla_kd",)
    history = [{"step": s, **{k: (1.0 if weighting != "difficulty" else 1.0 - 0.01 * s * (i + 1))
                              for i, k in enumerate(kinds)}} for s in (10, 20)]
    (folder / "weights.json").write_text(json.dumps({"weighting": weighting, "history": history}))
    return folder


def test_sigma_history_only_for_learned_weighting_and_revisions(env, tmp_path):
    recipe, _, repo_root = env
    other = load_recipe(repo_root / "recipes" / "quickstart.yaml", [f"runs_dir={tmp_path / 'runs'}", *FAST])
    from steper_bench.runs import RunPaths

    trained = _fake_trained(RunPaths.for_recipe(other).train("steper"), "steper", other.train_hash("steper"))
    cfg, method = parse_model_spec("trained:steper", other)
    assert method == "steper"
    rows = _sigma_rows("r", cfg, method)
    assert [(r["step"], r["kind"]) for r in rows] == [(s, k) for s in (10, 20) for k in ("final", "first", "mid")]
    assert sorted(r["sigma"] for r in rows if r["step"] == 20) == pytest.approx([0.4, 0.6, 0.8])
    # the trained student's revision is its train-stage hash, the suffix of its folder's name
    assert describe(cfg).revision == f"train:{trained.name.rsplit('-', 1)[1]}"
    for flat in ("vanilla-kd", "steper-first-mid"):
        cfg, method = parse_model_spec(str(_fake_trained(tmp_path / flat, flat)), recipe)
        assert method == flat and _sigma_rows("r", cfg, method) == []
        assert describe(cfg).revision == "train:abc123"


def test_model_specs(env, tmp_path):
    recipe, _, _ = env
    cfg, method = parse_model_spec("openai:Qwen2.5-0.5B-Instruct@http://user:secret@127.0.0.1:8000/v1", recipe)
    assert (cfg.backend, cfg.model, cfg.api, method) == ("openai", "Qwen2.5-0.5B-Instruct", "completions", "base")
    info = describe(cfg)
    assert "secret" not in info.identity and "127.0.0.1:8000" in info.identity
    assert info.size_b == 0.5 and info.family == "qwen"
    cfg, method = parse_model_spec("meta-llama/Llama-3.1-8B-Instruct", recipe)
    assert (cfg.backend, method, describe(cfg).size_b) == ("transformers", "base", 8.0)
    assert parse_model_spec("supporting-facts", recipe)[1] == "silver"
    assert parse_model_spec("teacher", recipe)[1] == "silver"  # quickstart's teacher is the silver one
    with pytest.raises(RecipeError, match="run steper-bench train first"):
        parse_model_spec("trained:steper", recipe)
    with pytest.raises(RecipeError, match="no such folder"):
        parse_model_spec(str(tmp_path / "missing" / "model"), recipe)


def test_cli_eval_and_report(env, silver, tmp_path):
    recipe, db, repo_root = env
    sets = [a for s in [f"runs_dir={recipe.resolve_path(recipe.runs_dir)}", *FAST] for a in ("--set", s)]
    out = CliRunner().invoke(app, ["eval", str(repo_root / "recipes/quickstart.yaml"), "--model", "supporting-facts",
                                   "--db", str(db), *sets])
    assert out.exit_code == 0, out.output
    assert "already finished" in out.output
    out = CliRunner().invoke(app, ["report", "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert "| silver | supporting-facts | 100.0 |" in out.stdout or "| silver | supporting-facts |" in out.stdout
    out = CliRunner().invoke(app, ["eval", str(repo_root / "recipes/quickstart.yaml"), "--model", "trained:steper",
                                   "--db", str(db), *sets])
    assert out.exit_code == 2 and "run steper-bench train first" in out.output


def test_eval_runs_the_judge_when_enabled(env, tmp_path):
    from support.servers import Reply, scripted_server

    recipe, _, repo_root = env
    db = tmp_path / "judged.duckdb"
    with scripted_server(lambda req: Reply.text(req, '{"score": 5, "rationale": "good"}')) as url:
        r = load_recipe(repo_root / "recipes/quickstart.yaml",
                        [f"runs_dir={recipe.resolve_path(recipe.runs_dir)}", *FAST, "eval.judge.enabled=true",
                         f"eval.judge.base_url={url}", "eval.judge.model=judge-x"])
        res = evaluate(r, model="supporting-facts", db=db, progress=False)
        assert server_count(url) == res.judge.judged > 0
    assert res.judge.failed == 0
    assert res.metrics["judge_aggregation"]["mean"] == 5.0
    # the CLI judge re-grades from the cache (the server is gone now), replacing the same rows
    sets = [f"runs_dir={recipe.resolve_path(recipe.runs_dir)}", *FAST, f"eval.judge.base_url={url}",
            "eval.judge.model=judge-x", "eval.judge.max_retries=0"]
    out = CliRunner().invoke(app, ["judge", str(repo_root / "recipes/quickstart.yaml"), "--db", str(db),
                                   *[a for s in sets for a in ("--set", s)], "--run", res.run_id])
    assert out.exit_code == 0, out.output
    assert "0 failed" in out.output and f"{res.judge.judged} cached" in out.output
    n = _table(db, "SELECT count(*) FROM judgments WHERE run_id=?", res.run_id)[0][0]
    assert n == res.judge.judged


def server_count(url) -> int:
    return url.count


@pytest.mark.slow
def test_harness_cli_entry_point(env, tmp_path):
    """`python -m steper_bench.lm_eval` is lm-eval's own CLI with our model and tasks."""
    import subprocess
    import sys

    _, _, repo = env
    cmd = [sys.executable, "-m", "steper_bench.lm_eval", "--model", "steper-multistep", "--model_args",
           f"recipe={repo / 'recipes' / 'quickstart.yaml'},model=supporting-facts,sets=eval.limit=3;runs_dir={tmp_path}",
           "--tasks", "steper_hotpotqa"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [ln for ln in p.stdout.splitlines() if "|steper_hotpotqa" in ln or "|acc" in ln or "|em" in ln]
    assert rows and all(ln.split("|")[7].strip() == "1" for ln in rows), p.stdout[-2000:]

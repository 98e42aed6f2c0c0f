"""Replicas of one model behind one teacher (`teacher.base_url: [url, url, ...]`): requests go to
the least busy replica, one that fails is taken out and probed back, and a build that loses a
replica mid-way finishes with nothing lost and nothing asked twice. Real loopback servers."""

from __future__ import annotations

import threading
import time

import pytest
from steper_bench.build import build
from steper_bench.generation import GeneratorError, StepRequest
from steper_bench.generation.openai_compat import OpenAIGenerator, check_endpoint
from steper_bench.recipe import GeneratorConfig, load_recipe
from steper_bench.records import Question
from support.reliability import QUICKSTART
from support.servers import Reply, fixed_text, free_port, scripted_server, steps_teacher

Q = Question("q1", "hotpotqa", "Who?", ["x"], [])


def reqs(n: int, tag: str = "") -> list[StepRequest]:
    return [StepRequest(prompt=f"Q: who {tag}{i}?\nA:", question=Q, context=[], previous=[]) for i in range(n)]


def gen(urls, **cfg) -> OpenAIGenerator:
    cfg = {"backend": "openai", "model": "m", "base_url": urls, "timeout_s": 5, "max_retries": 3, **cfg}
    return OpenAIGenerator(GeneratorConfig(**cfg), None, max_new_tokens=8, backoff_base_s=0.01)


def test_the_least_busy_replica_gets_the_next_request():
    slow_server, fast_server = (
        scripted_server(fixed_text("ok.", delay_s=0.2)),
        scripted_server(fixed_text("ok.", delay_s=0.02)),
    )
    with slow_server as slow, fast_server as fast, gen([slow, fast], concurrency=4) as g:
        out = g.generate(reqs(60))
        eps = g.endpoints()
    assert all(r.text == "ok." for r in out)
    assert fast.count >= 3 * slow.count > 0, (fast.count, slow.count)
    assert [e["calls"] for e in eps] == [slow.count, fast.count]
    assert g.identity.base_url == slow.base_url  # the first URL names the teacher


def test_a_dead_replica_is_taken_out_then_probed_back():
    with scripted_server(fixed_text("ok.")) as a, scripted_server(fixed_text("ok.")) as b:
        b.stop()  # refuses connections
        with gen([a, b], concurrency=4) as g:
            first = g.generate(reqs(20, "x"))
            out_of_service = g.endpoints()[1]
            b.start()
            time.sleep(0.6)  # past the first probe interval (0.5 s)
            again = g.generate(reqs(40, "y"))
            back = g.endpoints()[1]
    assert all(r.text == "ok." and not r.error for r in first + again)
    assert out_of_service["taken_out"] == 1 and not out_of_service["up"] and out_of_service["ok"] == 0
    assert back["up"] and back["ok"] > 0 and b.count == back["ok"]  # the probe succeeded: it serves again


def test_preflight_needs_one_replica_and_names_the_dead_ones():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    models = lambda req: Reply(json={"object": "list", "data": []})
    with scripted_server(models) as alive:
        notes = check_endpoint([dead, alive], None, field="teacher.base_url")
    assert notes == [f"teacher.base_url: {dead} does not answer (ConnectError); the build starts on the other replicas"]
    with pytest.raises(GeneratorError, match=f"cannot reach the endpoint {dead}, {dead.replace('/v1', '')}"):
        check_endpoint([dead, dead.replace("/v1", "")], None, field="teacher.base_url")


SETS = [
    "source.train_limit=30",
    "source.test_limit=3",
    "dataset.filter=all",
    "teacher.backend=openai",
    "teacher.model=scripted",
    "teacher.concurrency=4",
    "teacher.timeout_s=2",
    "teacher.max_retries=3",
    "framework.max_steps=3",
]


def test_a_build_that_loses_a_replica_mid_way_loses_nothing_and_repeats_nothing(tmp_path):
    teacher = steps_teacher(3, delay_s=0.03)
    killed = threading.Event()

    def dying(req):  # the 30th completion request takes this replica down for good
        if req.method == "POST" and req.index == 30:
            threading.Thread(target=lambda: (a.stop(), killed.set())).start()
        return teacher(req)

    with scripted_server(dying) as a, scripted_server(teacher) as b:
        r = load_recipe(QUICKSTART, [f"runs_dir={tmp_path}", *SETS, f"teacher.base_url=[{a}, {b}]"])
        s = build(r, progress=False, log=lambda m: None)
        assert killed.is_set()
        st = s.splits["train"]
        assert st.generated == 30 and st.dropped["failed steps"] == 0 and s.errors == 0, s.format()  # 0 lost
        answered_a, answered_b = a.stats(), b.stats()
        assert set(a.answered).isdisjoint(b.answered)  # no request answered by both
        assert answered_a["repeated"] == answered_b["repeated"] == 0
        assert answered_a["answered"] + answered_b["answered"] == s.requests  # each answered once
        ep_a, ep_b = s.endpoints
        assert ep_a["taken_out"] >= 1 and ep_a["failed"] >= 1 and ep_b["taken_out"] == 0
        assert f"endpoint {a.base_url}: " in s.format() and f"endpoint {b.base_url}: " in s.format()
        again = build(r, progress=False, log=lambda m: None)
        assert again.requests == 0 and b.stats()["answered"] == answered_b["answered"]  # a re-run asks nothing


def test_the_judge_spreads_over_its_replicas():
    import asyncio

    from steper_bench.evaluation.judge import JudgeClient, JudgeSettings

    verdict = fixed_text('{"score": 4, "rationale": "ok"}', delay_s=0.05)
    with scripted_server(verdict) as a, scripted_server(verdict) as b:
        settings = JudgeSettings(model="j", base_url=[a, b], api_key="EMPTY", concurrency=2, max_retries=0)

        async def ask_all():
            client = JudgeClient(settings, None)
            try:
                msgs = [[{"role": "user", "content": f"grade {i}"}] for i in range(12)]
                return await asyncio.gather(*(client.ask(m, "score") for m in msgs))
            finally:
                await client.close()

        answers = asyncio.run(ask_all())
    assert [x.value for x in answers] == [4] * 12
    assert a.count == b.count == 6


def test_profile_lists_the_calls_of_each_teacher_student_and_judge_endpoint(tmp_path):
    """`run --profile`'s table: every endpoint a stage called, with its calls as the servers
    counted them (teacher over two replicas at build and as the evaluated teacher, judge over two)."""
    import io

    from rich.console import Console
    from steper_bench import pipeline

    verdict = fixed_text('{"score": 4, "rationale": "ok"}')
    with scripted_server(steps_teacher(2)) as a, scripted_server(steps_teacher(2)) as b, \
            scripted_server(verdict) as ja, scripted_server(verdict) as jb:
        sets = [f"runs_dir={tmp_path}", *SETS, f"teacher.base_url=[{a}, {b}]", "source.test_limit=4",
                "eval.models=[]", "eval.include_teacher=true", "eval.judge.enabled=true", "eval.judge.model=j",
                f"eval.judge.base_url=[{ja}, {jb}]", "eval.judge.api_key=EMPTY", "eval.judge.concurrency=2"]
        r = load_recipe(QUICKSTART, sets)
        report = pipeline.RunReport(db=str(tmp_path / "results.duckdb"))
        pipeline._build(r, False, False, lambda m: None, report)
        built = {e["url"]: e["calls"] for e in report.stages[0].endpoints}
        run_ids = pipeline._evaluate(r, False, report.db, False, lambda m: None, report)
        pipeline._judge(r, False, run_ids, report.db, lambda m: None, report)
        out = io.StringIO()
        Console(file=out, width=200).print(pipeline.profile_table(report))
        counts = {u: sum(r.method == "POST" for r in u.requests) for u in (a, b, ja, jb)}  # not the preflight GETs
    text = out.getvalue()
    assert "calls per endpoint" in text
    rows = {(ln.split("│")[1].strip(), ln.split("│")[3].strip()): ln for ln in text.splitlines() if ln.count("│") > 6}
    assert set(rows) == {("build", a.base_url), ("build", b.base_url), ("eval", a.base_url), ("eval", b.base_url),
                         ("judge", ja.base_url), ("judge", jb.base_url)}, text
    evaluated = {e["url"]: e["calls"] for s in report.stages if s.stage == "eval" for e in s.endpoints}
    judged = {e["url"]: e["calls"] for s in report.stages if s.stage == "judge" for e in s.endpoints}
    assert all(built[u] + evaluated[u] == counts[u] and built[u] and evaluated[u] for u in (a.base_url, b.base_url))
    assert all(judged[u] == counts[u] > 0 for u in (ja.base_url, jb.base_url))
    assert f"│ {built[a.base_url]} │" in rows[("build", a.base_url)]

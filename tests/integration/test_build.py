"""`steper-bench build` end to end on the shipped sample: configs, card, resume, SIGKILL, shards,
dry run, fail-fast preflight, and a real `transformers serve` teacher."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.servers import Reply, free_port, scripted_server, serve_transformers

from steper_bench.build import BuildError, build, read_trajectories, shard_of
from steper_bench.recipe import load_recipe
from steper_bench.stepwise import CONFIGS, STEP_CONFIGS

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SMALL = ["source.train_limit=30", "source.test_limit=8", "dataset.splits=[train, test]"]
CLI = [sys.executable, "-m", "steper_bench"]


def recipe(runs: Path, *extra: str):
    return load_recipe(QUICKSTART, [f"runs_dir={runs}", *SMALL, *extra])


def tables(folder: Path) -> dict[tuple[str, str], object]:
    return {(p.parent.name, p.name): pq.read_table(p) for p in sorted(folder.glob("*/*.parquet"))}


def stable(tabs: dict) -> dict:
    """Step configs whole; trajectories without timings and cache flags (they vary by run)."""
    keep = ["question_id", "reasoning", "prediction", "stop_reason", "kept", "acc"]
    return {k: (t.select(keep) if k[0] == "trajectories" else t) for k, t in tabs.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    r = recipe(runs)
    return r, build(r, progress=False, log=lambda m: None)


def test_build_writes_five_configs_card_and_recipe(built):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    r, s = built
    out = Path(s.paths["dataset"])
    assert {p.name for p in out.iterdir() if p.is_dir()} == set(CONFIGS)
    for config in CONFIGS:
        for split in ("train", "test"):
            assert (out / config / f"{split}-00000-of-00001.parquet").is_file()
    assert s.splits["train"].questions == 30 and s.splits["test"].questions == 8
    # The silver teacher states the gold answer: every trajectory is kept.
    assert s.splits["train"].kept == 30 and s.counts["final"]["train"] == 30
    assert 0 < s.counts["first"]["train"] <= 30 and s.counts["mid"]["train"] > 0
    first = load_dataset(str(out), "first", split="train")
    assert first.num_rows == s.counts["first"]["train"]
    assert all(re.fullmatch(r".+:first:1", i) for i in first["id"])
    final = load_dataset(str(out), "final", split="test")
    assert all("So the answer is:" in c for c in final["completion"])
    card = (out / "README.md").read_text()
    data = DatasetCard(card).data
    assert data.license == "cc-by-sa-4.0"
    assert {c["config_name"] for c in data.configs} == set(CONFIGS)
    assert "question-answering" in data.task_categories
    assert s.build_hash in card and "2510.07923" in card and "@inproceedings{yang-etal-2018-hotpotqa" in card
    assert "Paper settings vs our choices" in card and "not a result" in card
    assert (out / "recipe.yaml").read_text() == r.to_yaml()
    assert (Path(s.run_dir) / "build.log").read_text().count("requests") >= 1
    assert {"retrieval", "generation", "writing"} <= set(s.timings)
    assert s.requests > 0


def test_rerun_calls_nothing_and_is_identical(built):
    r, s = built
    before = tables(Path(s.paths["dataset"]))
    t0 = time.perf_counter()
    again = build(r, progress=False, log=lambda m: None)
    assert again.requests == 0 and again.cache_hits == 0
    assert again.splits["train"].resumed == 30 and again.splits["train"].generated == 0
    assert "generation" not in again.timings and time.perf_counter() - t0 < 15
    assert stable(tables(Path(again.paths["dataset"]))) == stable(before)


def test_limit_is_a_prefix_and_reuses_trajectories(built, tmp_path):
    r, s = built
    small = build(r, limit=5, output=tmp_path / "small", progress=False, log=lambda m: None)
    assert small.requests == 0 and small.splits["train"].questions == 5
    assert small.counts["trajectories"] == {"train": 5, "test": 5}


def test_shards_then_merge_equal_the_unsharded_build(built, tmp_path):
    _, whole = built
    r = recipe(tmp_path / "runs")
    a = build(r, shard="0/2", progress=False, log=lambda m: None)
    b = build(r, shard=(1, 2), progress=False, log=lambda m: None)
    assert a.splits["train"].questions + b.splits["train"].questions == 30
    assert a.splits["train"].questions > 0 and b.splits["train"].questions > 0
    traj = Path(a.run_dir) / "trajectories"
    ids0 = set(read_trajectories(traj / "train.shard-0-of-2.jsonl"))
    ids1 = set(read_trajectories(traj / "train.shard-1-of-2.jsonl"))
    assert not ids0 & ids1 and all(shard_of(q, 2) == 0 for q in ids0)
    assert not (Path(a.run_dir) / "dataset").exists()  # shards write trajectories only
    merged = build(r, merge=True, progress=False, log=lambda m: None)
    assert merged.requests == 0
    assert stable(tables(Path(merged.paths["dataset"]))) == stable(tables(Path(whole.paths["dataset"])))


def test_merge_with_a_missing_shard_says_which(tmp_path):
    r = recipe(tmp_path / "runs")
    build(r, shard="1/3", progress=False, log=lambda m: None)
    with pytest.raises(BuildError, match=r"shard\(s\) 0/3, 2/3 missing"):
        build(r, merge=True, progress=False, log=lambda m: None)


def test_dry_run_calls_nothing(tmp_path):
    runs = tmp_path / "runs"
    p = subprocess.run([*CLI, "build", str(QUICKSTART), "--dry-run", "--set", f"runs_dir={runs}",
                        *[x for s in SMALL for x in ("--set", s)]], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "train: 30 questions, 0 already built, 30 to run, <= 180 requests" in p.stderr
    assert "at most 228 generator requests" in p.stderr  # (30 + 8) x (5 steps + 1 forced)
    assert not list(runs.glob("*/trajectories")) and not (runs / "cache.sqlite").exists()


def _scripted_teacher(questions):
    """An OpenAI-compatible teacher: question i answers after 1-3 steps, each step 0.3 s."""
    gold = {q.question.strip(): q.answer for q in questions}
    delay = {"s": 0.3}

    def handle(req):
        prompt = (req.body or {}).get("prompt") if isinstance(req.body, dict) else None
        if not prompt:
            return Reply(json={"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        question = prompt.rsplit("\nQ: ", 1)[1].split("\nA:", 1)[0].strip()
        done = len(re.findall(r"[.!?](?:\s|$)", prompt.rsplit("\nA:", 1)[1]))
        needed = 1 + int(shard_of(question, 3))
        if done + 1 >= needed:
            return Reply.text(req, f" So the answer is: {gold[question]}.", delay_s=delay["s"])
        words = " ".join(re.sub(r"[^\w\s]", " ", question).split())  # one period: one sentence
        return Reply.text(req, f" Step {done + 2} is about {words}.", delay_s=delay["s"])

    return handle, delay


def _kill_build_then_resume(tmp_path, killed_when):
    """Run `steper-bench build` against the scripted teacher, SIGKILL it once
    `killed_when(server, trajectories_file)` holds, resume in process and build a clean copy.
    Returns (lines flushed at the kill, resumed summary, clean summary, trajectories file)."""
    from steper_bench.sources import load_questions

    base = recipe(tmp_path / "probe")
    qs = load_questions(base, "train").questions + load_questions(base, "test").questions
    handler, delay = _scripted_teacher(qs)
    with scripted_server(handler) as server:
        sets = [f"runs_dir={tmp_path / 'killed'}", *SMALL, "teacher.backend=openai", f"teacher.base_url={server}",
                "teacher.model=scripted", "teacher.concurrency=16"]
        r = load_recipe(QUICKSTART, sets)
        out = Path(tmp_path / "killed") / f"quickstart-{r.stage_hash('build')}" / "trajectories" / "train.jsonl"
        cmd = [*CLI, "build", str(QUICKSTART), "--quiet", *[x for s in sets for x in ("--set", s)]]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not killed_when(server, out):
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # the build process itself, by its PID
        proc.wait(timeout=10)
        partial = out.read_bytes().count(b"\n") if out.exists() else 0
        delay["s"] = 0.0
        resumed = build(r, progress=False, log=lambda m: None)
        clean = build(load_recipe(QUICKSTART, [f"runs_dir={tmp_path / 'clean'}", *sets[1:]]),
                      progress=False, log=lambda m: None)
    return partial, resumed, clean, out


@pytest.mark.slow
def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path):
    partial, resumed, clean, out = _kill_build_then_resume(
        tmp_path, lambda server, out: out.exists() and out.read_bytes().count(b"\n") >= 1)
    assert 0 < partial < 30, f"kill landed at {partial} trajectories: not mid-way"
    assert resumed.splits["train"].resumed == partial
    lines = [ln for ln in out.read_text().splitlines() if ln.strip()]
    assert len({__import__("json").loads(ln)["question_id"] for ln in lines}) == 30
    got, want = stable(tables(Path(resumed.paths["dataset"]))), stable(tables(Path(clean.paths["dataset"])))
    assert got == want
    assert clean.counts["mid"]["train"] > 0 and clean.splits["train"].kept >= 25


def _results(summary) -> tuple[list[str], list[tuple[str, str]]]:
    """A build's trajectories (sorted, without latencies) and its cache rows (key, value)."""
    import json
    import sqlite3

    out = Path(summary.run_dir) / "trajectories" / "train.jsonl"
    rows = []
    for line in out.read_text().splitlines():
        d = json.loads(line)
        for st in d["steps"]:
            st["latency_s"] = 0.0
        rows.append(json.dumps(d, ensure_ascii=False))
    db = sqlite3.connect(Path(summary.run_dir).parent / "cache.sqlite")
    try:
        return sorted(rows), sorted(db.execute("SELECT key, value FROM responses"))
    finally:
        db.close()


def test_streaming_and_step_synchronous_loops_give_the_same_trajectories_and_cache(tmp_path, monkeypatch):
    """The streaming driver (each question's next step sent as its last one returns, answers
    arriving in any order: random delays) and the step-synchronous one (one batch per step) give
    byte-identical trajectories and cache rows."""
    import random

    from steper_bench.generation.openai_compat import OpenAIGenerator
    from steper_bench.sources import load_questions

    qs = load_questions(recipe(tmp_path / "probe"), "train").questions
    handler, _ = _scripted_teacher(qs)
    rng = random.Random(0)

    def jittered(req):
        r = handler(req)
        r.delay_s = rng.random() * 0.02
        return r

    results = {}
    with scripted_server(jittered) as server:
        sets = [*SMALL, "teacher.backend=openai", f"teacher.base_url={server}", "teacher.model=scripted",
                "teacher.concurrency=8", "dataset.splits=[train]"]
        for streaming in (True, False):
            monkeypatch.setattr(OpenAIGenerator, "streaming", streaming)
            runs = tmp_path / f"streaming-{streaming}"
            s = build(load_recipe(QUICKSTART, [f"runs_dir={runs}", *sets]), progress=False, log=lambda m: None)
            assert s.splits["train"].generated == 30 and s.errors == 0
            results[streaming] = _results(s)
    assert len({len(t.steps) for t in read_trajectories(Path(s.run_dir) / "trajectories" / "train.jsonl").values()}) > 1
    assert results[True] == results[False]


def test_paper_recipe_without_env_fails_fast(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TEACHER_BASE_URL", "TEACHER_API_KEY")}
    t0 = time.perf_counter()
    p = subprocess.run([*CLI, "build", str(REPO / "recipes" / "hotpotqa.yaml"), "--set", f"runs_dir={tmp_path}"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "TEACHER_BASE_URL is not set" in p.stderr and "recipes/quickstart.yaml" in p.stderr
    # With the variables set but nothing reachable: the Hub check names what to set.
    dead = f"http://127.0.0.1:{free_port()}"
    env.update(TEACHER_BASE_URL=f"{dead}/v1", TEACHER_API_KEY="x", HF_ENDPOINT=dead, HF_HUB_OFFLINE="0")
    p = subprocess.run([*CLI, "build", str(REPO / "recipes" / "musique.yaml"), "--set", f"runs_dir={tmp_path}"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"cannot reach the Hub at {dead} to load source.hub_id=dgslibisey/MuSiQue" in p.stderr
    assert "set source.train_file / source.test_file" in p.stderr and "HF_ENDPOINT" in p.stderr
    assert time.perf_counter() - t0 < 40
    assert not list(Path(tmp_path).glob("*/trajectories"))


@pytest.mark.slow
def test_build_with_a_real_transformers_serve_teacher(tiny_model_dir, tmp_path):
    with serve_transformers(tiny_model_dir) as url:
        r = load_recipe(QUICKSTART, [
            f"runs_dir={tmp_path}", "source.train_limit=5", "teacher.backend=openai", f"teacher.base_url={url}",
            f"teacher.model={tiny_model_dir}", "dataset.filter=all", "framework.max_steps=2",
            "framework.max_new_tokens=8", "teacher.concurrency=4",
            "corpus.top_k=2",  # K=4 pooled prompts reached 2354 tokens: over the tiny model's 2048 (an HTTP 400)
        ])
        s = build(r, progress=False, log=lambda m: None)
        assert s.requests > 0 and s.splits["train"].questions == 5
        again = build(r, progress=False, log=lambda m: None)
    assert again.requests == 0
    trajs = read_trajectories(Path(s.run_dir) / "trajectories" / "train.jsonl")
    assert len(trajs) == 5 and all(t.generator.backend == "openai" for t in trajs.values())
    # A random model rarely answers; with filter `all` its chains are still expanded (unless a step failed).
    kept = s.splits["train"].kept
    assert kept + s.splits["train"].dropped["failed steps"] == 5
    assert sum(s.counts[c]["train"] for c in STEP_CONFIGS) >= kept


@pytest.mark.slow
def test_sigkill_inside_a_step_repeats_no_answered_call(tmp_path):
    """Killed while requests are in flight (the first 16 answered, the next ones not yet): every
    answer that came back is in the cache or in a finished trajectory, so the re-run pays only
    for the rest."""
    answered = {}

    def second_wave_in_flight(server, out):
        # 1 preflight GET, 16 step-1 requests (answered after 0.3 s, together), then 16 more,
        # sent as the first answers come back: give the answers 0.1 s to be saved, then kill
        # while the second wave has 0.2 s to go.
        if server.count < 33:
            return False
        time.sleep(0.1)
        answered["n"] = server.stats()["answered"]
        return True

    partial, resumed, clean, _ = _kill_build_then_resume(tmp_path, second_wave_in_flight)
    assert answered["n"] == 16 and partial < 16, (answered, partial)
    assert resumed.requests == clean.requests - answered["n"]  # no answered call paid again
    assert stable(tables(Path(resumed.paths["dataset"]))) == stable(tables(Path(clean.paths["dataset"])))

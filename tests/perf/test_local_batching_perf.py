"""Perf: the loop on the tiny local model, all questions batched vs one question at a time.

Same model, same settings, same questions; greedy, so both runs produce the same trajectories.
Goal (issue): batching across questions is >= 3x faster.

What batching saves is the per-token decode cost (one forward for 32 rows instead of 32). The
prefill of long prompts is compute-bound on a CPU and batching cannot shorten it: measured on 2
cores with one thread, ~640-token prompts gave 1.2x, ~230-token prompts 4.2x. So this uses short
paragraphs (decode-dominated, as generation on a GPU is); prompt length is printed beside it.
"""

from __future__ import annotations

import time

import pytest

from steper_bench.generation.local import make
from steper_bench.reasoning.loop import LoopSettings, run_loop, trajectory_step_prompt
from steper_bench.recipe import GeneratorConfig, Recipe
from steper_bench.retrieval import make_retriever
from steper_bench.sources import load_file

N = 32


@pytest.mark.perf
def test_batched_loop_vs_one_at_a_time(tiny_model_dir, repo_root):
    dev = repo_root / "data" / "hotpotqa" / "dev.jsonl"
    questions = load_file("hotpotqa", dev, split="test").questions[:N]
    retriever = make_retriever(Recipe(source={"test_file": str(dev)}), questions, None)
    # max_steps=1: every question runs a retrieval step and the forced step (a random model's
    # sentences rarely retrieve anything, which would end most questions after one step).
    settings = LoopSettings(few_shot=0, max_steps=1, top_k=2, paragraph_chars=150, max_new_tokens=32)

    def gen(batch_size):
        cfg = GeneratorConfig(backend="transformers", model=str(tiny_model_dir), device="cpu", batch_size=batch_size)
        return make(cfg, max_new_tokens=settings.max_new_tokens)

    batched_gen, single_gen = gen(N), gen(1)
    run_loop(questions[:2], retriever, batched_gen, settings, progress=False)  # warm-up

    t0 = time.perf_counter()
    batched = run_loop(questions, retriever, batched_gen, settings, progress=False)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = [run_loop([q], retriever, single_gen, settings, progress=False)[0] for q in questions]
    t_single = time.perf_counter() - t0

    ratio = t_single / t_batched
    steps = sum(len(t.steps) for t in batched)
    prompt_tokens = len(batched_gen.tokenizer(trajectory_step_prompt(batched[0], 1, settings))["input_ids"])
    print(f"\n{N} questions, {steps} steps, ~{prompt_tokens}-token prompts: batched {t_batched:.2f}s, "
          f"one at a time {t_single:.2f}s, speed-up {ratio:.1f}x (goal >= 3x)")
    assert [t.reasoning for t in batched] == [t.reasoning for t in single]
    assert ratio >= 3.0

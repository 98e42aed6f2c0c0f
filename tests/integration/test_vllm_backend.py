"""`teacher.backend: vllm`, the in-process engine. On a machine with a CUDA GPU and vllm installed
(`pip install 'steper-bench[vllm]'`) a build runs the tiny model through it; elsewhere that test
skips with one line, and the error a user gets without vllm is checked instead."""

from __future__ import annotations

import pytest
from steper_bench.build import BuildError, build
from steper_bench.generation.vllm_offline import available
from steper_bench.recipe import load_recipe
from support.reliability import QUICKSTART

WHY = available()


def _recipe(tmp_path, model):
    return load_recipe(
        QUICKSTART,
        [
            f"runs_dir={tmp_path}",
            "source.train_limit=6",
            "source.test_limit=3",
            "dataset.filter=all",
            "teacher.backend=vllm",
            f"teacher.model={model}",
            "framework.max_steps=2",
            "framework.max_new_tokens=8",
            "teacher.engine_args={gpu_memory_utilization: 0.3, max_model_len: 2048, enforce_eager: true}",
        ],
    )


@pytest.mark.skipif(bool(WHY), reason=WHY or "")
def test_a_build_through_the_in_process_engine_then_from_the_cache(tiny_model_dir, tmp_path):
    r = _recipe(tmp_path, tiny_model_dir)
    s = build(r, progress=False, log=lambda m: None)
    assert s.splits["train"].generated == 6 and s.requests > 0 and s.errors == 0, s.format()
    again = build(r, progress=False, log=lambda m: None)
    assert again.requests == 0  # every step from the request cache


@pytest.mark.skipif(not WHY, reason="vllm runs here: the error path is not reachable")
def test_without_vllm_or_a_gpu_the_build_says_what_to_install(tmp_path):
    with pytest.raises(BuildError, match=r"teacher\.backend vllm: .*(pip install 'steper-bench\[vllm\]'|no CUDA GPU)"):
        build(_recipe(tmp_path, "some/model"), progress=False, log=lambda m: None)
    assert not list(tmp_path.glob("*/trajectories"))

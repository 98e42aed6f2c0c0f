"""`teacher.backend: vllm` and the eval form `--model vllm:MODEL`, the in-process engine. On a
machine with a CUDA GPU and vllm installed (`pip install 'steper-bench[vllm]'`) a build and an
eval run the tiny model through it; elsewhere those tests skip with one line, and the errors a
user gets without vllm are checked instead. How `vllm:MODEL` is parsed is checked everywhere."""

from __future__ import annotations

import json

import pytest
from steper_bench.build import BuildError, build
from steper_bench.evaluation import evaluate, parse_model_spec
from steper_bench.evaluation.models import describe
from steper_bench.generation import GeneratorError
from steper_bench.generation.vllm_offline import available
from steper_bench.recipe import RecipeError, load_recipe
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


ENGINE = "eval.engine_args={gpu_memory_utilization: 0.3, max_model_len: 2048, enforce_eager: true}"
EVAL = [ENGINE, "eval.limit=3", "framework.max_steps=2", "eval.max_new_tokens=8", "eval.models=[]"]


def test_vllm_model_spec_runs_what_the_inner_spec_names_through_the_engine(tiny_model_dir, tmp_path):
    r = load_recipe(QUICKSTART, [f"runs_dir={tmp_path}", *EVAL])
    cfg, method = parse_model_spec(f"vllm:{tiny_model_dir}", r)
    plain, _ = parse_model_spec(str(tiny_model_dir), r)
    assert (cfg.backend, cfg.model, method) == ("vllm", plain.model, "base")
    assert cfg.engine_args == {"gpu_memory_utilization": 0.3, "max_model_len": 2048, "enforce_eager": True}
    info, plain_info = describe(cfg), describe(plain)
    assert info.identity != plain_info.identity  # another engine: another run id
    assert (info.model, info.revision, info.family) == (plain_info.model, plain_info.revision, plain_info.family)
    hub, _ = parse_model_spec("vllm:Qwen/Qwen2.5-0.5B-Instruct", r)
    assert (hub.backend, hub.model, describe(hub).size_b) == ("vllm", "Qwen/Qwen2.5-0.5B-Instruct", 0.5)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    for spec, why in [("vllm:", "name the model after vllm:"), ("vllm:openai:m@http://127.0.0.1:1/v1", "the openai backend, not weights"),
                      ("vllm:trained:steper", "run steper-bench train first"), (f"vllm:{adapter}", "LoRA adapter")]:
        with pytest.raises(RecipeError, match=why):
            parse_model_spec(spec, r)


@pytest.mark.skipif(bool(WHY), reason=WHY or "")
def test_eval_of_a_vllm_student_then_the_same_run_is_found(tiny_model_dir, tmp_path):
    r = load_recipe(QUICKSTART, [f"runs_dir={tmp_path}", *EVAL])
    db = tmp_path / "r.duckdb"
    res = evaluate(r, model=f"vllm:{tiny_model_dir}", db=db, progress=False)
    assert res.n == 3 and not res.skipped_existing
    again = evaluate(r, model=f"vllm:{tiny_model_dir}", db=db, progress=False)
    assert again.skipped_existing and again.run_id == res.run_id


@pytest.mark.skipif(not WHY, reason="vllm runs here: the error path is not reachable")
def test_without_vllm_or_a_gpu_a_vllm_student_says_what_to_install_before_any_work(tiny_model_dir, tmp_path):
    r = load_recipe(QUICKSTART, [f"runs_dir={tmp_path}", *EVAL])
    db = tmp_path / "r.duckdb"
    with pytest.raises(GeneratorError, match=r"--model vllm:.*(pip install 'steper-bench\[vllm\]'|no CUDA GPU)"):
        evaluate(r, model=f"vllm:{tiny_model_dir}", db=db, progress=False)
    assert not db.exists()  # failed before the results file was opened

"""In-process vLLM (`backend: vllm`, the optional extra `pip install 'steper-bench[vllm]'`): the
offline engine on one GPU node, for a teacher (or student) without a server in between.

Each generate() call (one loop step) hands every request to the engine at once; vLLM's
continuous batching schedules them, and prefix caching computes the prompt text the steps of one
question share (demonstrations, question, earlier paragraphs) once. Stop sequences come per
request from the framework; sample i of a prompt uses seed + i. `engine_args` go to `vllm.LLM`
as they are (tensor_parallel_size, gpu_memory_utilization, max_model_len, ...). Cache keys: the
backend, model, revision, a fingerprint of local weights, prompt, decoding parameters and sample
index, as for the transformers backend.
"""

from __future__ import annotations

from pathlib import Path

from steper_bench.generation import GeneratorError
from steper_bench.generation.base import StepRequest, StepResult, cached_results
from steper_bench.generation.local import weights_fingerprint
from steper_bench.records import GeneratorIdentity

BACKEND = "vllm"
INSTALL = "pip install 'steper-bench[vllm]' (vLLM needs a CUDA GPU)"


def available() -> str:
    """'' when the engine can run here, else why not (one line)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return f"backend vllm: the vllm package is not installed: {INSTALL}"
    import torch

    return "" if torch.cuda.is_available() else "backend vllm: no CUDA GPU is visible (CUDA_VISIBLE_DEVICES?)"


class VLLMGenerator:
    def __init__(self, cfg, cache=None, max_new_tokens: int = 64):
        why = available()
        if why:
            raise GeneratorError(why)
        from vllm import LLM

        self.cfg, self.cache, self.max_new_tokens = cfg, cache, max_new_tokens
        self.identity = GeneratorIdentity(backend=BACKEND, model=cfg.model, revision=cfg.revision or "")
        args = {"enable_prefix_caching": True, "seed": cfg.seed, **cfg.engine_args}
        self.llm = LLM(model=cfg.model, revision=cfg.revision, **args)
        self._fingerprint = weights_fingerprint(Path(cfg.model))
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0}

    def _key(self, req: StepRequest) -> str:
        c = self.cfg
        return self.cache.key(
            kind="generation",
            backend=BACKEND,
            model=c.model,
            revision=c.revision or "",
            fingerprint=self._fingerprint,
            prompt=req.prompt,
            temperature=c.temperature,
            top_p=c.top_p,
            seed=c.seed,
            max_new_tokens=self.max_new_tokens,
            sample_index=req.sample_index,
            stop=list(req.stop),
        )

    def _params(self, req: StepRequest):
        from vllm import SamplingParams

        c = self.cfg
        return SamplingParams(
            temperature=c.temperature,
            top_p=c.top_p,
            seed=c.seed + req.sample_index,
            max_tokens=self.max_new_tokens,
            stop=list(req.stop) or None,
        )

    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        self.stats["requests"] += len(requests)
        keys = [self._key(r) for r in requests] if self.cache is not None else []
        out = cached_results(self.cache, keys, len(requests), self.stats)
        todo = [i for i, r in enumerate(out) if r is None]
        if todo:
            done = self.llm.generate(
                [requests[i].prompt for i in todo], [self._params(requests[i]) for i in todo], use_tqdm=False
            )
            for i, o in zip(todo, done):
                gen = o.outputs[0]
                out[i] = StepResult(text=gen.text, tokens=len(gen.token_ids))
            if self.cache is not None:
                self.cache.put_many([(keys[i], {"text": out[i].text, "tokens": out[i].tokens}) for i in todo])
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.llm = None


def make(cfg, cache=None, max_new_tokens: int = 64) -> VLLMGenerator:
    return VLLMGenerator(cfg, cache=cache, max_new_tokens=max_new_tokens)

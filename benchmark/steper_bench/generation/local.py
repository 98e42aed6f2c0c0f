"""Local transformers backend: batched generation on one model (a path or a Hub id).

A batch of step requests is cut into chunks of `batch_size`, each padded on the LEFT (decoder-
only models continue from the last real token) and generated together; a row stops once its
request's framework says the step is complete (`StepRequest.complete`) or one of its stop
sequences appears, and its text is cut before the first stop sequence (as HTTP servers do).
Greedy when temperature == 0, else sampled with the configured seed. A directory holding
`adapter_config.json` is a PEFT LoRA adapter: its base model is loaded and the adapter merged.
With a RequestCache, results are reused across runs (key: backend, model + revision + a
fingerprint of local weights, prompt, decoding parameters, sample index).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from steper_bench.generation.base import StepRequest, StepResult, cached_results
from steper_bench.records import GeneratorIdentity

BACKEND = "transformers"


def _pick_device(device: str | None) -> str:
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_fingerprint(path: Path) -> str:
    """Names, sizes and mtimes of a local model's weight/config files: a retrained model in the
    same folder gets new cache keys."""
    if not path.is_dir():
        return ""
    parts = sorted(
        f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in path.iterdir()
        if f.suffix in (".safetensors", ".bin", ".json") and f.is_file()
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def load_model(model: str, revision: str | None = None, device: str | None = None):
    """(model, tokenizer) for a path or Hub id; a LoRA adapter folder loads base + adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = _pick_device(device)
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    path = Path(model)
    adapter = (path / "adapter_config.json").is_file()
    base_id = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] if adapter else model
    tok_src = model if (path / "tokenizer_config.json").is_file() or not adapter else base_id
    tokenizer = AutoTokenizer.from_pretrained(tok_src, revision=None if adapter else revision)
    lm = AutoModelForCausalLM.from_pretrained(base_id, revision=None if adapter else revision, dtype=dtype)
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, model).merge_and_unload()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm.to(device).eval(), tokenizer


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text before the earliest stop sequence (the OpenAI API's semantics), leading
    whitespace skipped: a small local model that opens with a newline still gets its step."""
    text = text.lstrip()
    ends = [i for i in (text.find(s) for s in stop if s) if i != -1]
    return text[: min(ends)] if ends else text


def _done(req: StepRequest, text: str) -> bool:
    text = text.lstrip()
    return (req.complete is not None and req.complete(text)) or any(s and s in text for s in req.stop)


class _StepStop:
    """Stops each row once its new text holds a whole step (see `_done`)."""

    def __init__(self, tokenizer, prompt_len: int, requests: list[StepRequest]):
        self.tokenizer, self.prompt_len, self.requests = tokenizer, prompt_len, requests

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([_done(r, t) for r, t in zip(self.requests, texts)], device=input_ids.device)


class TransformersGenerator:
    def __init__(self, cfg, cache=None, max_new_tokens: int = 64):
        self.cfg, self.cache, self.max_new_tokens = cfg, cache, max_new_tokens
        self.identity = GeneratorIdentity(backend=BACKEND, model=cfg.model, revision=cfg.revision or "")
        self.model, self.tokenizer = load_model(cfg.model, cfg.revision, cfg.device)
        self._fingerprint = weights_fingerprint(Path(cfg.model))
        limit = getattr(self.model.config, "max_position_embeddings", None) or 4096
        self.max_prompt_tokens = max(limit - max_new_tokens, 16)
        self.stats = {"requests": 0, "cache_hits": 0, "errors": 0, "truncated": 0}

    # -- cache ----------------------------------------------------------------------------
    def _key(self, req: StepRequest) -> str:
        c = self.cfg
        return self.cache.key(
            kind="generation", backend=BACKEND, model=c.model, revision=c.revision or "",
            fingerprint=self._fingerprint, prompt=req.prompt, temperature=c.temperature, top_p=c.top_p,
            seed=c.seed, max_new_tokens=self.max_new_tokens, sample_index=req.sample_index, stop=list(req.stop),
        )

    def generate(self, requests: list[StepRequest]) -> list[StepResult]:
        self.stats["requests"] += len(requests)
        keys = [self._key(r) for r in requests] if self.cache is not None else []
        out = cached_results(self.cache, keys, len(requests), self.stats)
        todo = [i for i, r in enumerate(out) if r is None]
        # Similar lengths together: less padding per chunk.
        todo.sort(key=lambda i: len(requests[i].prompt))
        bs = max(1, int(self.cfg.batch_size))
        for start in range(0, len(todo), bs):
            chunk = todo[start : start + bs]
            for i, res in zip(chunk, self._generate_chunk([requests[i] for i in chunk])):
                out[i] = res
            if self.cache is not None:
                self.cache.put_many([(keys[i], {"text": out[i].text, "tokens": out[i].tokens}) for i in chunk])
        return out  # type: ignore[return-value]

    def _generate_chunk(self, requests: list[StepRequest]) -> list[StepResult]:
        import torch
        from transformers import StoppingCriteriaList

        tok, c = self.tokenizer, self.cfg
        rows = tok([r.prompt for r in requests], verbose=False)["input_ids"]  # over-long prompts are cut (and counted) below
        self.stats["truncated"] += sum(len(r) > self.max_prompt_tokens for r in rows)
        rows = [r[-self.max_prompt_tokens :] for r in rows]  # an over-long prompt loses its oldest text
        enc = tok.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(self.model.device)
        prompt_len = enc["input_ids"].shape[1]
        sample = c.temperature > 0
        kwargs = dict(do_sample=sample, max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id)
        if sample:
            torch.manual_seed(c.seed)
            kwargs.update(temperature=c.temperature, top_p=c.top_p)
        else:  # explicit, so a model's generation_config cannot turn sampling on
            kwargs.update(temperature=None, top_p=None, top_k=None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(
                **enc, stopping_criteria=StoppingCriteriaList([_StepStop(tok, prompt_len, requests)]), **kwargs
            )
        share = (time.perf_counter() - t0) / len(requests)
        new = ids[:, prompt_len:]
        return [StepResult(text=cut_at_stop(tok.decode(row, skip_special_tokens=True), r.stop), latency_s=share,
                           tokens=self._count(row)) for r, row in zip(requests, new)]

    def _count(self, row) -> int:
        """Generated tokens up to and including the first end-of-sequence (pads excluded)."""
        stops = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        for n, t in enumerate(row.tolist()):
            if t in stops:
                return n + 1 if t == self.tokenizer.eos_token_id else n
        return len(row)

    def close(self) -> None:
        self.model = None


def make(cfg, cache=None, max_new_tokens: int = 64) -> TransformersGenerator:
    return TransformersGenerator(cfg, cache=cache, max_new_tokens=max_new_tokens)

"""`--model` specs for the student under evaluation, and what the results store records of it.

    supporting-facts        the silver teacher (gold supporting sentences) as a reference row
    teacher                 the recipe's teacher config
    student                 the recipe's train.student, untrained (the ICL baseline row)
    trained:METHOD          this recipe's trained student (RunPaths.train(METHOD))
    gguf:FILE               a GGUF file (path or <package>/<file>), dequantised once (model_sources)
    openai:MODEL@BASE_URL   an OpenAI-compatible endpoint, completions API (lm-eval's
                            local-completions semantics); openai:MODEL alone means OpenAI itself
    vllm:MODEL              MODEL (a folder, Hub id, trained:METHOD, student, gguf:FILE) run by the
                            in-process vLLM engine (generation/vllm_offline.py, as teacher.backend:
                            vllm) instead of transformers; eval.engine_args go to vllm.LLM
    anything else           a local folder (full model or LoRA adapter) or a Hub id: transformers
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from steper_bench.model_sources import is_gguf
from steper_bench.model_sources import resolve as resolve_model
from steper_bench.recipe import GeneratorConfig, Recipe, RecipeError, endpoint_urls
from steper_bench.runs import RunPaths

FORMS = ("supporting-facts", "teacher", "student", "trained:METHOD", "gguf:FILE", "openai:MODEL@BASE_URL", "vllm:MODEL",
         "a local model folder (full model or LoRA adapter)", "a Hub model id (org/name)")
_OPENAI = re.compile(r"^openai:(?P<model>.+?)(?:@(?P<url>https?://.+))?$")
_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s*[bB](?![A-Za-z])")
LOCAL_BACKENDS = ("transformers", "vllm")  # weights on this machine: describe() reads their folder
_FAMILIES = ("llama", "qwen", "mistral", "mixtral", "gemma", "phi", "deepseek", "olmo", "gpt", "smollm", "falcon")


def parse_model_spec(spec: str, recipe: Recipe) -> tuple[GeneratorConfig, str]:
    """(generator config, method label) for one --model value."""
    spec = spec.strip()
    if not spec:
        raise RecipeError("--model: empty model spec")
    common = {"batch_size": recipe.eval.batch_size, "concurrency": recipe.eval.concurrency,
              "timeout_s": recipe.eval.timeout_s, "max_retries": recipe.eval.max_retries}
    if spec == "supporting-facts":
        return GeneratorConfig(backend="supporting-facts", model="supporting-facts"), "silver"
    if spec.startswith("vllm:"):
        return _vllm(spec, recipe)
    if spec == "teacher":
        t = recipe.teacher.model_copy()
        return t, "silver" if t.backend == "supporting-facts" else "teacher"
    if spec == "student":
        student = recipe.train.student
        if student == "tiny":
            student = str(RunPaths.for_recipe(recipe).tiny_student)
            if not Path(student, "config.json").exists():
                raise RecipeError("--model student: the tiny student is built by the first `steper-bench train`; "
                                  "train first, or name a pretrained train.student")
        student = resolve_model(student, recipe)
        local = recipe.resolve_path(student)
        model = str(local.resolve()) if local.exists() else student
        return GeneratorConfig(backend="transformers", model=model, revision=recipe.train.student_revision,
                               **common), "base"
    if spec.startswith("trained:"):
        method = spec.split(":", 1)[1]
        folder = RunPaths.for_recipe(recipe).train(method)
        if not (folder / "train_summary.json").exists():
            raise RecipeError(
                f"--model {spec}: no trained {method} student at {folder}; run steper-bench train first "
                f"(steper-bench train {recipe.path or 'RECIPE'})"
            )
        return GeneratorConfig(backend="transformers", model=str(folder), **common), method
    if is_gguf(spec):
        return GeneratorConfig(backend="transformers", model=resolve_model(spec, recipe), **common), "base"
    m = _OPENAI.match(spec)
    if m:
        url = m.group("url")
        key = "${env:OPENAI_API_KEY}" if (url is None or "OPENAI_API_KEY" in os.environ) else None
        cfg = GeneratorConfig(backend="openai", model=m.group("model"), base_url=url, api_key=key,
                              api="completions", **common)
        return cfg, "base"
    local = Path(os.path.expanduser(spec))
    if local.exists():
        method = train_summary(local).get("method", "base")
        return GeneratorConfig(backend="transformers", model=str(local.resolve()), **common), method
    if spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise RecipeError(f"--model {spec}: no such folder (and not a Hub id like org/name)")
    if ":" in spec:
        raise RecipeError(f"--model {spec}: not a model spec; accepted forms: {'; '.join(FORMS)}")
    return GeneratorConfig(backend="transformers", model=spec, **common), "base"


def _vllm(spec: str, recipe: Recipe) -> tuple[GeneratorConfig, str]:
    """vllm:MODEL: the model MODEL names for transformers, run by the in-process vLLM engine."""
    inner = spec.split(":", 1)[1].strip()
    if not inner:
        raise RecipeError("--model vllm: name the model after vllm: (vllm:org/name, vllm:FOLDER, vllm:trained:steper)")
    cfg, method = parse_model_spec(inner, recipe)
    if cfg.backend != "transformers":
        raise RecipeError(f"--model {spec}: vllm: runs local or Hub weights; {inner!r} names the {cfg.backend} backend, "
                          "not weights")
    if (Path(cfg.model) / "adapter_config.json").exists():
        raise RecipeError(f"--model {spec}: {cfg.model} is a LoRA adapter, which the vllm backend does not load; "
                          "evaluate it without vllm: (transformers), or merge it into its base model first")
    return cfg.model_copy(update={"backend": "vllm", "engine_args": dict(recipe.eval.engine_args)}), method


@dataclass
class ModelInfo:
    model: str  # what the leaderboard shows
    identity: str  # what the run id hashes: backend, model, public base url, revision
    revision: str
    family: str
    size_b: float | None
    backend: str
    base_model: str  # for trained students: the student they started from
    training: dict  # a trained student's provenance: method_spec, trained_on, train_build, train_questions


def train_summary(folder: Path) -> dict:
    """A trained student's train_summary.json ({} for any other folder)."""
    f = folder / "train_summary.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def describe(cfg: GeneratorConfig) -> ModelInfo:
    """Leaderboard facts about a generator; never includes credentials."""
    from steper_bench.generation.openai_compat import public_url

    first = (endpoint_urls(cfg.base_url) or [""])[0]  # replicas: the first names the model, as in cache keys
    base_url = public_url(first) if first and "${" not in first else first
    name, base = cfg.model, cfg.model
    local = Path(cfg.model)
    if cfg.backend in LOCAL_BACKENDS and local.exists():
        base = _base_model_name(local)
        name = f"{base} ({local.name})" if base not in (cfg.model, local.name) else local.name
    identity = json.dumps([cfg.backend, cfg.model, base_url, cfg.revision or ""])
    size = _size_from_name(base) or _size_from_name(cfg.model)
    if size is None and cfg.backend in LOCAL_BACKENDS and local.exists():
        size = _counted_size_b(local)
    revision = cfg.revision or (_local_revision(local) if cfg.backend in LOCAL_BACKENDS and local.is_dir() else "")
    summary = train_summary(local) if cfg.backend in LOCAL_BACKENDS and local.is_dir() else {}
    training = {k: summary.get(k) for k in ("method_spec", "trained_on", "train_build", "train_questions")}
    return ModelInfo(name, identity, revision, _family(f"{base} {cfg.model}", local), size, cfg.backend, base, training)


def _local_revision(folder: Path) -> str:
    """What identifies a local model's weights: a trained student's train-stage hash (its
    folder's suffix, from train_summary.json), else the weight files' fingerprint (the one the
    local generator keys its cache with)."""
    from steper_bench.generation.local import weights_fingerprint

    train_hash = train_summary(folder).get("train_hash")
    if train_hash:
        return f"train:{train_hash}"
    return f"files:{weights_fingerprint(folder)}"


def _base_model_name(folder: Path) -> str:
    """A trained student's or adapter's starting model; a converted or built student's spec
    (SOURCE.json: gguf:..., tiny), so untrained and trained rows name the same student; else the
    folder name."""
    for fname, key in (("train_summary.json", "base_model"), ("adapter_config.json", "base_model_name_or_path"),
                       ("SOURCE.json", "spec")):
        f = folder / fname
        if f.exists():
            try:
                v = json.loads(f.read_text()).get(key)
            except (OSError, json.JSONDecodeError):
                v = None
            if v:
                return str(v)
    return folder.name


def _size_from_name(name: str) -> float | None:
    m = _SIZE.search(name.rsplit("/", 1)[-1])
    return float(m.group(1)) if m else None


def _family(text: str, local: Path) -> str:
    low = text.lower()
    for fam in _FAMILIES:
        if fam in low:
            return fam
    cfg = local / "config.json"
    if cfg.exists():
        try:
            return str(json.loads(cfg.read_text()).get("model_type", ""))
        except (OSError, json.JSONDecodeError):
            pass
    return ""


def _counted_size_b(folder: Path) -> float | None:
    """Parameters counted from safetensors headers (no weights loaded), in billions."""
    total = 0
    for f in folder.glob("*.safetensors"):
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                count = 1
                for d in v["shape"]:
                    count *= d
                total += count
    return round(total / 1e9, 6) if total else None

"""`train(recipe, method=...)`: one student per method, from the built step-wise dataset.

Output folder (RunPaths.train(method) unless given):
  model or LoRA adapter + tokenizer, weights.json (sigma per kind + history), train_summary.json,
  README.md (model card), checkpoints/ while training (removed once the model is written).
A folder whose train_summary.json carries the same train-stage hash is finished: skipped.

Multi-GPU: `accelerate launch --config_file recipes/accelerate/zero3.yaml -m steper_bench train RECIPE`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from steper_bench.console import logged
from steper_bench.methods import Method
from steper_bench.model_sources import is_gguf, note_for
from steper_bench.model_sources import resolve as resolve_model
from steper_bench.provenance import package_versions
from steper_bench.recipe import Recipe, RecipeError
from steper_bench.runs import RunPaths, atomic_write_text
from steper_bench.training.data import (
    all_texts,
    is_local,
    load_step_data,
    tokenize_rows,
)

log = logging.getLogger(__name__)

SUMMARY = "train_summary.json"
WEIGHTS = "weights.json"
CHECKPOINTS = "checkpoints"
DEMO_NOTICE = "PIPELINE DEMO, NOT A RESULT: a tiny random student trained for seconds on CPU; its outputs are noise."
WORLD_NOTICE = ("SMALL STUDENT TRAINED FROM SCRATCH ON THE SYNTHETIC WORLD: it shows whether a method teaches the "
                "retrieve-then-reason skill on CPU; it is not comparable with the paper's numbers.")


def demo_notice(recipe: Recipe) -> str:
    """What the card of a tiny from-scratch student says it is."""
    return WORLD_NOTICE if recipe.source.dataset == "synthetic-world" else DEMO_NOTICE


@dataclass
class TrainResult:
    method: str
    output_dir: Path
    sigmas: dict[str, float]
    n_examples: dict[str, int]
    seconds: float  # this call's time: the training, or near 0 for a skip (summary["seconds"] keeps the training's)
    steps: int
    skipped_existing: bool = False
    summary: dict = field(default_factory=dict, repr=False)


@logged("train")
def train(recipe: Recipe, *, method: str, data: str | os.PathLike | None = None,
          output: str | os.PathLike | None = None, resume: bool = True, progress: bool = True) -> TrainResult:
    """Train one student with `method` (a name in train.methods or a preset: steper_bench/methods.py)
    and write it out."""
    t0 = time.perf_counter()
    spec = recipe.method(method)
    cfg = recipe.train
    if cfg.packing and len(spec.kinds) > 1:
        raise RecipeError(
            f"train.packing: true is not possible for {method}: packing merges examples of different step kinds "
            "into one sequence, so the per-kind losses cannot be told apart. Set train.packing: false."
        )
    paths = RunPaths.for_recipe(recipe)
    out = Path(output) if output else paths.train(method)
    train_hash = recipe.train_hash(spec)
    done = _finished(out, train_hash, method)
    if done is not None:
        done.seconds = time.perf_counter() - t0  # what the skip took, not the old training time
        return done

    source, revision = _data_source(recipe, data, paths)
    step_data = load_step_data(spec, source, revision=revision, train_questions=cfg.train_questions, seed=cfg.seed)
    student, student_rev = _student(recipe, source, revision, paths)
    started = time.time()
    trainer, dropped = _build_trainer(recipe, spec, step_data, student, student_rev, out)
    _show_progress(trainer, spec, progress)
    ckpt = _last_checkpoint(out / CHECKPOINTS) if resume else None
    if ckpt:
        log.info("resuming %s from %s", method, ckpt)
    trainer.train(resume_from_checkpoint=ckpt)
    seconds = time.time() - started

    result = TrainResult(method, out, _sigmas(trainer), step_data.counts, seconds, trainer.state.global_step)
    trainer.save_model(str(out))  # every rank: ZeRO-3 gathers the shards collectively
    trainer.accelerator.wait_for_everyone()  # no rank still touches checkpoints/ when it is removed
    if trainer.is_world_process_zero():
        result.summary = _write_outputs(recipe, spec, trainer, step_data, student, student_rev, out,
                                        result, dropped, resumed_from=ckpt)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        if cfg.push_to_hub:
            push_model(out, cfg.hub_model_id)
    trainer.accelerator.wait_for_everyone()
    return result


# -- inputs ---------------------------------------------------------------------------------------


def _data_source(recipe: Recipe, data, paths: RunPaths) -> tuple[str, str | None]:
    """--data, else train.data (relative to the recipe), else this recipe's built dataset."""
    if data is not None:
        return str(data), recipe.train.data_revision
    if recipe.train.data:
        local = recipe.resolve_path(recipe.train.data)
        return (str(local) if local.exists() else recipe.train.data), recipe.train.data_revision
    if not paths.dataset.exists():
        raise RecipeError(
            f"no step-wise dataset at {paths.dataset}: run `steper-bench build {recipe.path or 'RECIPE'}` first, "
            "or pass --data DIR_OR_HUB_ID (or set train.data)"
        )
    return str(paths.dataset), None


def _student(recipe: Recipe, source: str, revision: str | None, paths: RunPaths) -> tuple[str, str | None]:
    """The student's path or Hub id; "tiny" builds the offline demo model once per run folder."""
    cfg = recipe.train
    if is_gguf(cfg.student):
        return resolve_model(cfg.student, recipe), None
    if cfg.student != "tiny":
        local = recipe.resolve_path(cfg.student)
        return (str(local) if local.exists() else cfg.student), cfg.student_revision
    import torch
    from accelerate import PartialState

    tiny_dir = paths.tiny_student
    with PartialState(cpu=not torch.cuda.is_available()).main_process_first():  # under accelerate launch: one process builds it
        if not (tiny_dir / "config.json").exists():
            from steper_bench.tiny import build_tiny_model

            t = cfg.tiny
            build_tiny_model(tiny_dir, all_texts(source, revision=revision), seed=cfg.seed, vocab_size=t.vocab_size,
                             hidden=t.hidden, layers=t.layers, heads=t.heads, tie_embeddings=t.tie_embeddings)
    return str(tiny_dir), None


def use_bf16(setting) -> bool:
    """train.bf16: auto means bf16 where the GPU has it; never on CPU."""
    import torch

    if setting == "auto":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if setting and not torch.cuda.is_available():
        raise RecipeError("train.bf16: true needs a GPU with bf16; this machine has none (use auto or false)")
    return bool(setting)


def _show_progress(trainer, method: Method, enabled: bool) -> None:
    """Our progress line instead of transformers' printed log dicts (kept with -v)."""
    from transformers.trainer_callback import PrinterCallback

    from steper_bench.console import is_quiet
    from steper_bench.training.progress import TrainProgress

    if is_quiet():
        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainProgress(method.name, enabled, show_sigmas=method.weighting == "difficulty"))


# TrainConfig fields that are SFTConfig fields of the same meaning, passed as they are.
SFT_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type", "weight_decay",
              "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "logging_steps", "save_steps")


def _build_trainer(recipe: Recipe, method: Method, step_data, student: str, student_rev, out: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steper_bench.training.trainer import StepERConfig, StepERTrainer

    cfg = recipe.train
    tokenizer = AutoTokenizer.from_pretrained(student, revision=student_rev)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset, dropped = tokenize_rows(step_data.rows, tokenizer, step_data.kinds, cfg.max_length)
    common = dict(
        output_dir=str(out / CHECKPOINTS),
        **{f: getattr(cfg, f) for f in SFT_FIELDS},
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        activation_checkpointing=cfg.gradient_checkpointing,
        bf16=use_bf16(cfg.bf16),
        use_cpu=not torch.cuda.is_available(),  # also what makes torchrun on CPU real DDP (gloo)
        data_seed=cfg.seed,
        save_total_limit=1,
        report_to="none",
        max_length=None,  # already truncated (left of the prompt) by tokenize_rows
        disable_tqdm=True,
        push_to_hub=False,  # pushed by push_model with the card and summary
    )
    # Loaded after the config exists, so that under ZeRO-3 from_pretrained shards the weights as it
    # loads. fp32 master weights; bf16 autocast when enabled (pure bf16 loses updates at LR 5e-6).
    peft_config = _peft_config(cfg.lora)
    if cfg.packing:  # a one-kind method (train() refuses others): plain SFT, TRL packs the pre-tokenised rows
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**{**common, "max_length": cfg.max_length}, packing=True)
        model = AutoModelForCausalLM.from_pretrained(student, revision=student_rev, dtype=torch.float32)
        return SFTTrainer(model=model, args=args, train_dataset=dataset.remove_columns("kind_id"),
                          processing_class=tokenizer, peft_config=peft_config), dropped
    args = StepERConfig(**common, kinds=tuple(method.kinds), weighting=method.weighting,
                        kind_weights=method.weight_list(), sigma_learning_rate=cfg.sigma_learning_rate)
    model = AutoModelForCausalLM.from_pretrained(student, revision=student_rev, dtype=torch.float32)
    trainer = StepERTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    return trainer, dropped


def _peft_config(lora):
    if not lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint: the Trainer writes trainer_state.json last, so a folder
    without it was cut mid-write by a crash and is skipped."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    done = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
            if p.name.rsplit("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if done else None


def _finished(out: Path, train_hash: str, method: str) -> TrainResult | None:
    path = out / SUMMARY
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if summary.get("train_hash") != train_hash or summary.get("method") != method:
        raise RecipeError(
            f"{out} holds a model trained with other settings (train hash {summary.get('train_hash')}, method "
            f"{summary.get('method')}; now {train_hash}, {method}): choose another --output or remove it"
        )
    log.info("%s already trained (%s): skipping", method, path)
    return TrainResult(method, out, summary.get("sigmas", {}), summary.get("n_examples", {}),
                       0.0, summary.get("steps", 0), skipped_existing=True, summary=summary)


# -- outputs --------------------------------------------------------------------------------------


def _sigmas(trainer) -> dict[str, float]:
    log_vars = getattr(trainer, "log_vars", None)
    return log_vars.sigmas() if log_vars is not None else {}


def _curve(points: list[dict], key: str) -> dict:
    values = [p[key] for p in points]
    if not values:
        return {"first": None, "last": None, "min": None}
    return {"first": values[0], "last": values[-1], "min": min(values)}


def _write_outputs(recipe, method, trainer, step_data, student, student_rev, out, result, dropped, resumed_from):
    cfg = recipe.train
    points = getattr(trainer, "loss_curve", None) or [
        {"step": e["step"], "loss": e["loss"], "ce": e["loss"]} for e in trainer.state.log_history if "loss" in e
    ]
    weights = {**result.sigmas,
               "weighting": method.weighting,
               "kind_weights": dict(zip(method.kinds, method.weight_list())),
               "history": list(getattr(trainer, "sigma_history", [])),
               "s": trainer.log_vars.values() if hasattr(trainer, "log_vars") else {}}
    atomic_write_text(out / WEIGHTS, json.dumps(weights, indent=2))
    record = _dataset_record(recipe, step_data)
    summary = {
        "method": method.name,
        "method_spec": method.spec(),
        "base_model": "tiny (built offline)" if cfg.student == "tiny" else cfg.student,
        "base_model_path": student,
        "base_model_revision": student_rev,
        "demo": cfg.student == "tiny",
        "demo_notice": demo_notice(recipe) if cfg.student == "tiny" else None,
        # a GGUF student: which file, its sha256, and that the weights passed through its quantisation
        "base_model_source": note_for(student),
        **record,
        # What the student learned from, for out-of-domain tables: the source dataset and the
        # build (hash) of its step-wise data; the framework it was built with.
        "trained_on": _trained_on(recipe, step_data),
        "train_build": record["dataset_revision"],
        "train_questions": cfg.train_questions,
        "framework": recipe.framework.name,
        "recipe_hash": recipe.hash,
        "train_hash": recipe.train_hash(method),
        "n_examples": result.n_examples,
        "dropped_too_long": dropped,
        "sigmas": result.sigmas,
        "loss": _curve(points, "loss"),
        "cross_entropy": _curve(points, "ce"),
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "resumed_from": Path(resumed_from).name if resumed_from else None,
        "lora": cfg.lora.model_dump() if cfg.lora.enabled else None,
        "hyperparameters": {k: getattr(cfg, k) for k in (
            "learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_ratio",
            "weight_decay", "sigma_learning_rate", "max_length", "per_device_train_batch_size",
            "gradient_accumulation_steps")},
        "bf16": bool(trainer.args.bf16),
        "num_processes": trainer.accelerator.num_processes,
        "seed": cfg.seed,
        "versions": package_versions(),
        "hub_model_id": cfg.hub_model_id if cfg.push_to_hub else None,
    }
    atomic_write_text(out / "README.md", render_model_card(recipe, summary))
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2))  # last: marks the folder finished
    return summary


def _trained_on(recipe: Recipe, step_data) -> str:
    """The source dataset of the step-wise data: from the recipe.yaml a build writes beside its
    data (so --data from another recipe's build is named right), else this recipe's."""
    import yaml

    built = Path(step_data.source).expanduser() / "recipe.yaml"
    if is_local(step_data.source) and built.is_file():
        try:
            return str(yaml.safe_load(built.read_text())["source"]["dataset"])
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            pass
    return recipe.source.dataset


def _dataset_record(recipe: Recipe, step_data) -> dict:
    """dataset / dataset_revision / dataset_path for the summary and card, with no absolute path for a
    dataset built by this recipe: its name, build hash (= revision) and folder relative to runs_dir."""
    if not is_local(step_data.source):  # Hub id + the commit it resolved to
        return {"dataset": step_data.source, "dataset_revision": step_data.revision, "dataset_path": None}
    paths = RunPaths.for_recipe(recipe)
    folder = Path(step_data.source).expanduser().resolve()
    runs_dir = paths.runs_dir.resolve()
    where = str(folder.relative_to(runs_dir)) if folder.is_relative_to(runs_dir) else str(folder)
    if folder == paths.dataset.resolve():
        build = recipe.stage_hash("build")
        return {"dataset": f"{recipe.name} build {build}", "dataset_revision": build, "dataset_path": where}
    return {"dataset": where, "dataset_revision": None, "dataset_path": where}  # a local folder from elsewhere


def render_model_card(recipe: Recipe, summary: dict) -> str:
    """README.md of a trained student: Hub front matter + the cards/model_card.md body."""
    from steper_bench.cards import render_card

    front = {"library_name": "peft" if summary["lora"] else "transformers",
             "tags": ["steper-bench", summary["method"], "step-wise-distillation"]}
    if summary["demo"]:
        front["tags"].append("pipeline-demo")
    elif not is_local(summary["base_model"]):  # a Hub id, not a path on this machine
        front["base_model"] = summary["base_model"]
    if summary.get("dataset_path") is None:  # a Hub dataset, not a folder on this machine
        front["datasets"] = [summary["dataset"]]
    return render_card("model_card.md", front_matter=front, summary=summary, recipe_name=recipe.name,
                       description=recipe.description, our_choices=recipe.our_choices,
                       demo_notice=summary.get("demo_notice") or DEMO_NOTICE)


def push_model(folder: Path, repo_id: str | None) -> str:
    """Upload the finished folder (model, card, weights, summary) with HfApi.upload_folder."""
    if not repo_id:
        raise RecipeError("train.push_to_hub is true but train.hub_model_id is not set (e.g. your-name/steper-8b)")
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN") or None)  # never logged or written
    api.create_repo(repo_id, repo_type="model", private=True, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message="steper-bench train", ignore_patterns=[f"{CHECKPOINTS}/**"])
    return getattr(info, "oid", None) or str(info)

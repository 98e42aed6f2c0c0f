"""One optimizer step of StepERTrainer over a fixed window of eight examples, for the
accumulation tests: the same examples as one batch, as 2 or 4 micro-batches, or split over
2 processes (run this file under torchrun: `python -m torch.distributed.run --nproc_per_node 2
tests/support/ga_window.py MODEL DATA WORK BATCH ACCUMULATION`).

The window's kinds are ordered so that every micro-batch (and, under 2 processes, every rank)
lacks at least one kind: first first mid first | final final mid final.
"""

from __future__ import annotations

import sys
from pathlib import Path

WINDOW_KINDS = ("first", "first", "mid", "first", "final", "final", "mid", "final")


def window_indices(dataset, kinds: tuple[str, ...]) -> list[int]:
    """Distinct row indices whose kinds follow WINDOW_KINDS, in that order."""
    free = {k: [i for i, kid in enumerate(dataset["kind_id"]) if kinds[kid] == k] for k in kinds}
    return [free[k].pop(0) for k in WINDOW_KINDS]


def make_trainer(model_dir: str, data_dir: str, work: str, batch: int, accumulation: int):
    """A StepERTrainer built the way `train` builds it (method steper: difficulty weighting)."""
    from steper_bench.methods import PRESETS
    from steper_bench.recipe import validate_recipe
    from steper_bench.training.data import load_step_data
    from steper_bench.training.pipeline import _build_trainer

    train = {"student": model_dir, "learning_rate": 1e-3, "max_steps": 1, "per_device_train_batch_size": batch,
             "gradient_accumulation_steps": accumulation, "warmup_ratio": 0.0, "logging_steps": 1,
             "save_steps": 1000, "max_length": 256, "sigma_learning_rate": 0.1, "lr_scheduler_type": "constant"}
    recipe = validate_recipe({"name": "ga", "runs_dir": str(Path(work) / "runs"),
                              "source": {"train_file": str(Path(data_dir) / "unused.jsonl")}, "train": train})
    method = PRESETS["steper"]
    trainer, _ = _build_trainer(recipe, method, load_step_data(method, data_dir), model_dir, None, Path(work))
    return trainer


def one_step(model_dir: str, data_dir: str, work: str, batch: int, accumulation: int) -> dict:
    """Train one optimizer step on the window; returns what the step computed and changed."""
    from transformers import TrainerCallback

    trainer = make_trainer(model_dir, data_dir, work, batch, accumulation)
    trainer.train_dataset = trainer.train_dataset.select(window_indices(trainer.train_dataset, trainer.kinds))
    trainer.args.train_sampling_strategy = "sequential"  # the window's order decides the micro-batches
    trainer.args.max_grad_norm = 0.0  # raw gradients: clipping to norm 1 would hide a scale error
    trainer.args.save_strategy = "no"
    seen: dict = {}

    class Probe(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            seen["grads"] = {
                n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None
            }
            seen["s_grad_local"] = trainer.log_vars.s.grad.detach().clone()

    def before_sigma_step(optimizer, args, kwargs):  # the s_j gradient the optimizer really uses
        seen["s_grad"] = trainer.log_vars.s.grad.detach().clone()

    trainer.add_callback(Probe())
    trainer.log_vars_optimizer.register_step_pre_hook(before_sigma_step)
    s_before = trainer.log_vars.s.detach().clone()
    trainer.train()
    logged = next(e for e in trainer.state.log_history if "loss" in e)
    return {
        **seen,
        "loss": logged["loss"],
        "logged": logged,
        "curve": trainer.loss_curve,
        "s_before": s_before,
        "s_after": trainer.log_vars.s.detach().clone(),
        "rank": trainer.accelerator.process_index,
        "world": trainer.accelerator.num_processes,
        "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
    }


if __name__ == "__main__":
    import torch

    model, data, work, batch, accumulation = sys.argv[1:6]
    result = one_step(model, data, work, int(batch), int(accumulation))
    torch.save(result, Path(work) / f"rank{result['rank']}.pt")

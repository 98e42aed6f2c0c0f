"""Difficulty-aware step-wise SFT: a TRL `SFTTrainer` with one cross-entropy per step kind,
configured by `StepERConfig` (an `SFTConfig` with the method's knobs).

Each kind j (first, mid, final, ...) gets its mean token cross-entropy L_j over completion
tokens, and the loss is

    sum_j w_j * exp(-s_j) * L_j + s_j,      s_j = log sigma_j^2 (initialised at 0)

- weighting `difficulty` (StepER): s_j learnable, w_j = 1;
- weighting `uniform`: s_j frozen at 0, w_j = 1, i.e. sum_j L_j;
- weighting `fixed`: s_j frozen at 0, w_j the method's weights, i.e. sum_j w_j L_j.

With s = log sigma^2, exp(-s) L + s = 2 * (L / (2 sigma^2) + log sigma): the paper's
uncertainty weighting (Kendall et al. 2018) up to a factor 2, which only rescales the step
size. A kind the model finds hard keeps a high L_j, so its sigma_j grows and its weight
exp(-s_j) falls. A batch without a kind contributes nothing for that kind (no L_j, no s_j).

Exactness under gradient accumulation and data parallelism: L_j is the mean over ALL the kind's
completion tokens in the accumulated batch of every rank (token counts per kind are taken when the
accumulation window is fetched), so micro-batch size and GPU count do not change the objective.

The s_j live on the trainer in a small `LogVariances` module with their OWN optimizer (AdamW,
`sigma_learning_rate`, no weight decay, constant rate), stepped right after the model's. Not a
param group of the model's optimizer because DeepSpeed ZeRO-3 partitions every parameter of that
optimizer and expects them inside the model it wraps; a separate optimizer works unchanged under
single-process, DDP and ZeRO-3. Their gradients are all-reduced (averaged like DDP's) when several
processes train. They are saved beside every checkpoint (`log_variances.pt`) and reloaded on
resume before the optimizer state.

(Methods and their weightings are data: steper_bench/methods.py.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

LOGVAR_FILE = "log_variances.pt"
# Config fields that change logits after the LM head (TRL's fused head applies them): a model with
# any of them set is scored by TRL's head on every device.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
WEIGHTINGS = ("difficulty", "uniform", "fixed")


@dataclass
class StepERConfig(SFTConfig):
    """SFTConfig plus the method: the kinds (names by kind id), their weighting and weights."""

    kinds: tuple[str, ...] = field(default=("first", "mid", "final"), metadata={"help": "step kinds by kind id"})
    weighting: str = field(default="difficulty", metadata={"help": "difficulty | uniform | fixed"})
    kind_weights: list[float] | None = field(default=None, metadata={"help": "fixed weighting: w_j per kind"})
    sigma_learning_rate: float = field(default=1e-2, metadata={"help": "AdamW rate of the log-variances s_j"})

    def __post_init__(self):
        super().__post_init__()
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.kind_weights is not None and len(self.kind_weights) != len(self.kinds):
            raise ValueError(f"kind_weights {self.kind_weights} should have one weight per kind {list(self.kinds)}")
        if self.weighting != "fixed" and self.kind_weights not in (None, [1.0] * len(self.kinds)):
            raise ValueError("kind_weights apply to weighting fixed only")
        if self.packing or self.padding_free:
            raise ValueError(
                "packing / padding_free merge examples of different step kinds into one row, which breaks the "
                "per-kind loss: set train.packing: false"
            )


class LogVariances(nn.Module):
    """s_j = log sigma_j^2 for each kind, initialised at 0 (sigma = 1, weight 1)."""

    def __init__(self, kinds: tuple[str, ...], learnable: bool = True):
        super().__init__()
        self.kinds = tuple(kinds)
        self.s = nn.Parameter(torch.zeros(len(kinds)), requires_grad=learnable)

    def sigmas(self) -> dict[str, float]:
        s = self.s.detach().float().cpu()
        return {k: math.exp(0.5 * float(v)) for k, v in zip(self.kinds, s)}

    def values(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.kinds, self.s.detach().float().cpu())}


@dataclass
class TokenScores:
    """Per next-token position (B, T-1): the label's log-probability (0 where the label is -100),
    whether it was the top-1 token, the entropy of the distribution, and the label mask."""

    log_probs: torch.Tensor
    is_top1: torch.Tensor
    entropy: torch.Tensor
    label_mask: torch.Tensor


def labelled_token_scores(model, inputs: dict[str, Any], head: nn.Module | None = None) -> TokenScores:
    """Run the backbone, then the LM head on the labelled positions only.

    TRL's fused head does this on CUDA / XPU (Triton); elsewhere it projects every position through
    the vocabulary in Python tiles, which on CPU was ~80% of a tiny student's step (1.2 of 1.5 s).
    `head`: the LM head, when `model` is a wrapper without `get_output_embeddings` (DDP)."""
    labels = inputs["labels"][:, 1:]
    mask = labels != -100
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = model(**rest, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][:, :-1]
    logits = (head or model.get_output_embeddings())(hidden[mask]).float()
    logp = logits.log_softmax(-1)
    target = labels[mask]
    picked = logp.gather(-1, target[:, None]).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1)
        top1 = logits.argmax(-1) == target

    def scatter(x: torch.Tensor) -> torch.Tensor:
        # masked_scatter keeps an all-masked micro-batch connected to the graph (a zero loss, not an error)
        return x.new_zeros(mask.shape).masked_scatter(mask, x)

    return TokenScores(scatter(picked), scatter(top1), scatter(entropy), mask)


def _scores_labelled_only(device: torch.device, config) -> bool:
    """Whether `labelled_token_scores` can stand in for TRL's head: off CUDA / XPU, plain logits."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    plain = all(getattr(text, f, None) is None for f in _LOGIT_TRANSFORMS)
    return device.type not in ("cuda", "xpu") and plain


class KindCollator(DataCollatorForLanguageModeling):
    """TRL's collator, plus each example's step kind as an int tensor (the stock one drops it)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call([{k: v for k, v in e.items() if k != "kind_id"} for e in examples])
        out["kind_id"] = torch.tensor([e["kind_id"] for e in examples], dtype=torch.long)
        return out


class _StepLogVariances(TrainerCallback):
    """Steps the s_j optimizer right after the model's optimizer, on every real update."""

    def __init__(self, trainer: StepERTrainer):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._end_window()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs is not None and "loss" in logs:
            self.trainer.sigma_history.append({"step": state.global_step, **self.trainer.log_vars.sigmas()})


class StepERTrainer(SFTTrainer):
    """SFTTrainer whose loss is the per-kind weighted cross-entropy described above.

    Takes `args: StepERConfig` and a pre-tokenised dataset with columns input_ids, labels,
    kind_id (see training.data)."""

    # compute_loss divides by whole-window token counts: already scaled for accumulation.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, **kwargs):
        cfg = kwargs.get("args")
        if not isinstance(cfg, StepERConfig):
            raise TypeError("StepERTrainer needs args=StepERConfig(...) (an SFTConfig with the method's kinds and weighting)")
        if "data_collator" not in kwargs or kwargs["data_collator"] is None:
            tok = kwargs.get("processing_class")
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            kwargs["data_collator"] = KindCollator(pad_token_id=pad)
        super().__init__(*args, **kwargs)
        self.kinds = tuple(cfg.kinds)
        self.weighting = cfg.weighting
        self._labelled_only = _scores_labelled_only(self.args.device, self.model.config)
        learned = cfg.weighting == "difficulty"
        self.kind_weights = torch.tensor(cfg.kind_weights or [1.0] * len(self.kinds), device=self.args.device)
        self.log_vars = LogVariances(self.kinds, learnable=learned).to(self.args.device)
        self.log_vars_optimizer = (
            torch.optim.AdamW(self.log_vars.parameters(), lr=cfg.sigma_learning_rate, weight_decay=0.0)
            if learned else None
        )
        self.sigma_history: list[dict] = []
        # Per optimizer step: the weighted objective and the plain token cross-entropy. Kept as device
        # tensors (no host sync per step) and read out by `loss_curve`.
        self._curve: list[tuple[int, torch.Tensor]] = []
        self._curve_done: list[dict] = []  # restored from a checkpoint
        self._window_acc = torch.zeros(3, device=self.args.device)  # objective, CE token sum, tokens
        self._log_acc = torch.zeros(2, len(self.kinds), device=self.args.device)  # per-kind CE sum, tokens
        self._window_counts: torch.Tensor | None = None
        self.add_callback(_StepLogVariances(self))

    # -- data plumbing -----------------------------------------------------------------------
    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "labels", "kind_id"]

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Fetch an accumulation window and count each kind's completion tokens in it (all ranks)."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        counts = torch.zeros(len(self.kinds), dtype=torch.float32, device=self.args.device)
        for b in batches:
            n_tok = (b["labels"][:, 1:] != -100).sum(-1).to(counts)  # shifted: what the loss scores
            counts.index_add_(0, b["kind_id"].to(counts.device), n_tok.to(counts.device))
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._window_counts = counts
        return batches, num_items

    # -- the loss ------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        kind_id = inputs.pop("kind_id")
        inputs["use_cache"] = False
        if self._labelled_only:
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            outputs = labelled_token_scores(model, inputs, head)
        else:
            outputs = model(**inputs, fused_lm_head=True)
        token_loss = -outputs.log_probs  # (B, T-1), zero where the label is -100
        mask = outputs.label_mask
        k = len(self.kinds)
        kind_sum = token_loss.new_zeros(k, dtype=torch.float32).index_add(0, kind_id, token_loss.float().sum(-1))
        kind_tok = token_loss.new_zeros(k, dtype=torch.float32).index_add(0, kind_id, mask.float().sum(-1))
        window = self._window_counts if (mode == "train" and self._window_counts is not None) else kind_tok
        denom = window.clamp(min=1)
        s = self.log_vars.s
        # Summed over the window's micro-batches (and ranks), sum_j w_j exp(-s_j) L_j + s_j exactly;
        # kinds absent from the window have kind_sum = kind_tok = 0 and so contribute nothing.
        loss = (self.kind_weights * torch.exp(-s) * kind_sum / denom + s * kind_tok / denom).sum()
        if mode == "train" and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes  # DDP / ZeRO average the gradients over ranks
        self._record_metrics(mode, outputs)
        if mode == "train":
            kind_sum, kind_tok = kind_sum.detach(), kind_tok.detach()
            self._log_acc += torch.stack([kind_sum, kind_tok])
            self._window_acc += torch.stack(
                [loss.detach().float() / self.accelerator.num_processes, kind_sum.sum(), kind_tok.sum()])
        return (loss, outputs) if return_outputs else loss

    def _record_metrics(self, mode: str, outputs) -> None:
        """Re-add TRL's token accuracy and entropy, which a compute_loss override drops."""
        gather = self.accelerator.gather_for_metrics
        n_valid = gather(outputs.label_mask.sum()).sum()
        if n_valid > 0:
            self._metrics[mode]["mean_token_accuracy"].append((gather(outputs.is_top1.sum()).sum() / n_valid).item())
            self._metrics[mode]["entropy"].append((gather(outputs.entropy.detach().sum()).sum() / n_valid).item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add, to each training log, each kind's token cross-entropy since the last log and sigma."""
        if "loss" in logs:
            acc = self._log_acc
            if self.accelerator.num_processes > 1:
                acc = self.accelerator.reduce(acc, reduction="sum")
            sums, toks = acc.tolist()
            for kind, total, n in zip(self.kinds, sums, toks):
                if n > 0:
                    logs[f"loss_{kind}"] = total / n
            logs.update({f"sigma_{k}": v for k, v in self.log_vars.sigmas().items()})
            self._log_acc.zero_()
        super().log(logs, start_time)

    @property
    def loss_curve(self) -> list[dict]:
        out = list(self._curve_done)
        for step, t in self._curve:
            obj, ce_sum, tok = t.tolist()
            out.append({"step": step, "loss": obj, "ce": ce_sum / max(tok, 1.0)})
        return out

    # -- s_j optimisation ------------------------------------------------------------------------
    def _end_window(self) -> None:
        """After each optimizer step: record the loss curve, then step the s_j."""
        acc = self._window_acc.clone()
        if self.accelerator.num_processes > 1:  # each rank holds its share of the window: sum them
            acc = self.accelerator.reduce(acc, reduction="sum")
        self._curve.append((self.state.global_step + 1, acc))
        self._window_acc.zero_()
        self._step_log_variances()

    def _step_log_variances(self) -> None:
        if self.log_vars_optimizer is None:
            return
        s = self.log_vars.s
        if s.grad is not None and self.accelerator.num_processes > 1:
            s.grad = self.accelerator.reduce(s.grad, reduction="mean")  # the module is outside DDP
        self.log_vars_optimizer.step()
        self.log_vars_optimizer.zero_grad(set_to_none=True)

    # -- checkpoints -----------------------------------------------------------------------------
    def log_variances_state(self) -> dict:
        return {
            "kinds": list(self.kinds),
            "s": self.log_vars.s.detach().cpu().clone(),
            "optimizer": self.log_vars_optimizer.state_dict() if self.log_vars_optimizer else None,
            "history": list(self.sigma_history),
            "loss_curve": list(self.loss_curve),
        }

    def load_log_variances(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if tuple(state["kinds"]) != self.kinds:
            raise ValueError(f"{path}: checkpoint kinds {state['kinds']} differ from this run's {list(self.kinds)}")
        with torch.no_grad():
            self.log_vars.s.copy_(state["s"].to(self.log_vars.s.device))
        if self.log_vars_optimizer is not None and state.get("optimizer"):
            self.log_vars_optimizer.load_state_dict(state["optimizer"])
        self.sigma_history = list(state.get("history", []))
        self._curve_done, self._curve = list(state.get("loss_curve", [])), []

    def _save_optimizer_and_scheduler(self, output_dir):
        # Saved here, not after the whole checkpoint: this runs before trainer_state.json, which
        # the Trainer writes last, so a checkpoint with trainer_state.json is complete.
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            path = Path(output_dir) / LOGVAR_FILE
            tmp = path.with_name(path.name + ".tmp")
            torch.save(self.log_variances_state(), tmp)
            os.replace(tmp, path)

    def _load_optimizer_and_scheduler(self, checkpoint):
        # s_j (and their optimizer) first, then the model's optimizer state.
        if checkpoint is not None:
            path = Path(checkpoint) / LOGVAR_FILE
            if path.exists():
                self.load_log_variances(path)
            elif self.weighting == "difficulty":
                raise FileNotFoundError(f"{checkpoint} has no {LOGVAR_FILE}: cannot resume the learned weights")
        super()._load_optimizer_and_scheduler(checkpoint)

"""The training stage's own progress line: step / total, ETA, the loss per kind and the sigmas
(the difficulty weighting's), like the build's. Trainer log dicts go to the stage log instead of
the console (transformers' PrinterCallback is removed when the CLI is quiet)."""

from __future__ import annotations

import json
import logging

from transformers import TrainerCallback

log = logging.getLogger("trl.steper_bench")  # routed with the libraries' logs (console.py)
log.setLevel(logging.INFO)


def _fmt(logs: dict, prefix: str, names: bool = True) -> str:
    items = [(k[len(prefix):], v) for k, v in logs.items() if k.startswith(prefix)]
    return " ".join(f"{k} {float(v):.2f}" if names else f"{float(v):.2f}" for k, v in items)


class TrainProgress(TrainerCallback):
    def __init__(self, method: str, enabled: bool = True, show_sigmas: bool = True):
        self.method, self.enabled, self.show_sigmas = method, enabled, show_sigmas
        self._progress = self._task = None
        self.info = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if not (self.enabled and state.is_world_process_zero):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("[bold]{task.fields[method]}"), BarColumn(bar_width=12),
                                  MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                  transient=False)
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                             method=self.method, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        log.info("step %d %s", state.global_step, json.dumps(logs, default=str))
        if self._progress is not None and "loss" in logs:
            parts = [_fmt(logs, "loss_")]  # each kind's cross-entropy
            if self.show_sigmas:
                parts.append("σ " + _fmt(logs, "sigma_", names=False))
            self.info = " | ".join(p for p in parts if p.strip(" σ"))
            self._progress.update(self._task, info=self.info)

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
            self._progress.stop()
            self._progress = None

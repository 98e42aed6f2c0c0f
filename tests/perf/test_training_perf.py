"""Step time of difficulty-aware SFT (StepERTrainer, learned sigma) vs plain SFT (TRL's SFTTrainer)
on the same batches and the same model, runs interleaved, median over steps. Goal: <= 1.05x.
On CPU the difficulty-aware trainer scores only the labelled positions through the LM head (TRL's
fused head scores every position there), so there the ratio is below 1."""

from __future__ import annotations

import statistics
import time

import pytest

torch = pytest.importorskip("torch")

from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from steper_bench.tiny import build_tiny_model, sample_texts  # noqa: E402
from steper_bench.training.data import tokenize_rows  # noqa: E402
from steper_bench.training.trainer import StepERConfig, StepERTrainer  # noqa: E402

STEPS_PER_RUN, ROUNDS = 7, 4


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._last = None

    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        if self._last is not None:  # the first step of a run is warm-up
            self.times.append(now - self._last)
        self._last = now


def _rows(texts: list[str], n: int = 96) -> list[dict]:
    kinds = ("first", "mid", "final")
    return [{"prompt": "Q: " + texts[i % len(texts)][:600] + "\nA:", "completion": " " + texts[(i + 7) % len(texts)][:300],
             "kind": kinds[i % 3]} for i in range(n)]


def _args(out, config=SFTConfig, **kw) -> SFTConfig:
    return config(output_dir=str(out), max_steps=STEPS_PER_RUN, per_device_train_batch_size=8, learning_rate=1e-4,
                     bf16=False, gradient_checkpointing=False, max_length=None, report_to="none", save_strategy="no",
                     logging_steps=4, disable_tqdm=True, seed=0, data_seed=0, dataloader_num_workers=0, **kw)


@pytest.mark.perf
def test_difficulty_aware_step_time_within_5_percent(tmp_path):
    texts = sample_texts()
    model_dir = build_tiny_model(tmp_path / "m", texts, hidden=128, layers=4, heads=4)
    tok = AutoTokenizer.from_pretrained(model_dir)
    kinds = ("first", "mid", "final")
    dataset, _ = tokenize_rows(_rows(texts), tok, kinds, 256)
    plain_dataset = dataset.remove_columns("kind_id")
    times = {"steper": [], "plain": []}
    for r in range(ROUNDS):
        for name in (("steper", "plain") if r % 2 == 0 else ("plain", "steper")):
            timer = StepTimer()
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            if name == "steper":
                args = _args(tmp_path / name, StepERConfig, kinds=kinds, weighting="difficulty")
                trainer = StepERTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                                        callbacks=[timer])
            else:
                trainer = SFTTrainer(model=model, args=_args(tmp_path / name), train_dataset=plain_dataset,
                                     processing_class=tok, callbacks=[timer])
            trainer.train()
            times[name].extend(timer.times)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["steper"] / med["plain"]
    print(f"\nstep time (median of {len(times['plain'])} steps each, interleaved): "
          f"difficulty-aware {med['steper'] * 1000:.1f} ms, plain SFT {med['plain'] * 1000:.1f} ms, ratio {ratio:.3f}x")
    assert ratio <= 1.05, f"difficulty-aware SFT step is {ratio:.3f}x plain SFT (goal <= 1.05x)"

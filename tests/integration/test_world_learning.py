"""A guard in the default run: step-wise training must teach the tiny student the synthetic world.

The real build, the real trainer (StepER's difficulty-aware loss, TRL, the collator and the
completion mask), a small world; then, on the step-wise rows of questions the student never
trained on, the share of completion tokens the student predicts right given the gold prefix
(teacher forcing), trained against untrained. A broken loss, label mask or collator leaves the
student near its untrained accuracy, so this fails (measured: 0.000 untrained, 0.372 after 60
updates, about 50 s here). A label mask that also trained on the prompts would not be caught here
(the prompts hold the same sentences); test_training.py checks the mask.

What it does not show: that the student answers questions (end-to-end Acc needs the tiny student
to learn to copy names, which took ~500 updates here; see README "The synthetic world").
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from steper_bench.build import build
from steper_bench.methods import PRESETS
from steper_bench.recipe import load_recipe
from steper_bench.runs import RunPaths
from steper_bench.training import encode_example, train
from steper_bench.training.data import load_config, sample_questions
from steper_bench.training.trainer import labelled_token_scores

RECIPE = """
name: world-learning
source: {dataset: synthetic-world, world: {seed: 5, train_questions: 320, test_questions: 10, cities: 200}}
corpus: {mode: pooled, top_k: 4, max_paragraphs: 12}
framework: {max_steps: 5, few_shot: 0}
teacher: {backend: supporting-facts, model: supporting-facts}
train:
  methods: [steper]
  student: tiny
  tiny: {hidden: 128, layers: 2, heads: 8, vocab_size: 1024, tie_embeddings: true}
  train_questions: 240
  learning_rate: 5.0e-3
  max_steps: 60
  per_device_train_batch_size: 16
  gradient_accumulation_steps: 1
  max_length: 512
  warmup_ratio: 0.05
"""


def _completion_accuracy(model_dir, rows) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    right = total = 0
    with torch.no_grad():
        for r in rows:
            ids, labels = encode_example(tok, r["prompt"], r["completion"], 512)
            scores = labelled_token_scores(model, {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels])})
            right += int(scores.is_top1.sum())
            total += int(scores.label_mask.sum())
    return right / total


def test_stepwise_training_lifts_held_out_completion_accuracy(tmp_path):
    path = tmp_path / "world.yaml"
    path.write_text(RECIPE + f"runs_dir: {tmp_path / 'runs'}\n")
    recipe = load_recipe(path)
    build(recipe, progress=False, log=lambda m: None)
    result = train(recipe, method="steper", progress=False)
    assert result.steps == 60

    paths = RunPaths.for_recipe(recipe)
    dataset = paths.dataset
    trained_on = sample_questions(str(dataset), 240, recipe.train.seed)
    rows = [r for kind in PRESETS["steper"].kinds for r in load_config(str(dataset), kind)
            if r["question_id"] not in trained_on]
    held_out = rows[::3][:40]
    assert len({r["kind"] for r in held_out}) == 3 and len(held_out) == 40

    untrained = _completion_accuracy(paths.tiny_student, held_out)
    trained = _completion_accuracy(result.output_dir, held_out)
    assert untrained < 0.05
    print(f"held-out completion-token accuracy: untrained {untrained:.3f}, trained {trained:.3f}")
    assert trained > untrained + 0.25, (untrained, trained)  # measured: 0.000 -> 0.372

"""Difficulty-aware step-wise SFT on a tiny random model, CPU, a few steps each."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from transformers import TrainerCallback  # noqa: E402

from steper_bench.methods import PRESETS  # noqa: E402
from steper_bench.recipe import RecipeError, validate_recipe  # noqa: E402
from steper_bench.runs import RunPaths  # noqa: E402
from steper_bench.training import encode_example, train  # noqa: E402
from steper_bench.training.data import load_step_data as _load, tokenize_rows  # noqa: E402


def load_step_data(method, data, **kw):
    return _load(PRESETS[method] if isinstance(method, str) else method, data, **kw)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "hotpotqa" / "train.jsonl"


# -- a small step-wise dataset in the built layout (DIR/<config>/train-00000-of-00001.parquet) --------


def sample_examples(n_questions: int = 12, *, noisy_kind: str | None = None, seed: int = 0) -> dict[str, list[dict]]:
    """first / mid / final / vanilla_kd rows made from the shipped HotpotQA sample's supporting facts.

    `noisy_kind` replaces that kind's completions with long random words: a kind much harder to learn.
    """
    rng = random.Random(seed)
    vocab = [w for line in SAMPLE.read_text().splitlines()[:20] for w in json.loads(line)["question"].split()]
    rows: dict[str, list[dict]] = {"first": [], "mid": [], "final": [], "vanilla_kd": []}
    for line in SAMPLE.read_text().splitlines()[:n_questions]:
        q = json.loads(line)
        paras = {t: s for t, s in q["context"]}
        facts = [paras[t][i].strip() for t, i in q["supporting_facts"] if t in paras and i < len(paras[t])][:2]
        chain = facts + [f"So the answer is: {q['answer']}."]
        context = " ".join(f"{t}: {''.join(paras[t])[:200]}" for t, _ in q["supporting_facts"][:2] if t in paras)
        for i, sentence in enumerate(chain):
            kind = "first" if i == 0 else "final" if i == len(chain) - 1 else "mid"
            if kind == noisy_kind:
                sentence = " ".join(rng.choice(vocab) for _ in range(40))
            prompt = f"Q: {q['question']}\nP: {context}\nR: {' '.join(chain[:i])}\nA:"
            rows[kind].append(_row(q, kind, i, prompt, " " + sentence))
        rows["vanilla_kd"].append(_row(q, "vanilla_kd", 0, f"Q: {q['question']}\nP: {context}\nA:", " " + " ".join(chain)))
    return rows


def _row(q: dict, kind: str, i: int, prompt: str, completion: str) -> dict:
    return {"id": f"{q['_id']}-{kind}-{i}", "question_id": q["_id"], "dataset": "hotpotqa", "split": "train",
            "kind": kind, "step_index": i, "prompt": prompt, "completion": completion, "retrieved_pids": [],
            "context_pids": [], "teacher": "supporting-facts", "recipe_hash": "test"}


def write_dataset(folder: Path, rows: dict[str, list[dict]]) -> Path:
    import datasets

    for config, items in rows.items():
        (folder / config).mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(items).to_parquet(str(folder / config / "train-00000-of-00001.parquet"))
    return folder


def make_recipe(tmp_path: Path, student: Path | str, **train) -> object:
    settings = dict(student=str(student), learning_rate=3e-3, max_steps=4, per_device_train_batch_size=4,
                    gradient_accumulation_steps=1, warmup_ratio=0.0, logging_steps=1, save_steps=2,
                    max_length=256, sigma_learning_rate=0.1, lr_scheduler_type="constant")
    settings.update(train)
    recipe = validate_recipe({"name": "t", "runs_dir": str(tmp_path / "runs"),
                              "source": {"train_file": str(SAMPLE)}, "train": settings})
    return recipe


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("stepwise"), sample_examples())


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _trainer(tmp_path, tiny_model_dir, data, method="steper", **train):
    """A ready StepERTrainer (not yet trained) built the way `train` builds it."""
    from steper_bench.training.pipeline import _build_trainer

    recipe = make_recipe(tmp_path, tiny_model_dir, **train)
    spec = recipe.method(method) if isinstance(method, str) else method
    step_data = load_step_data(spec, data)
    trainer, _ = _build_trainer(recipe, spec, step_data, str(tiny_model_dir), None, tmp_path / "out")
    return trainer


def _dataset_ce(trainer) -> float:
    """Mean completion-token cross-entropy of the model over the whole training set."""
    model, ds = trainer.model, trainer.train_dataset
    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for i in range(0, len(ds), 8):
            batch = trainer._prepare_inputs(trainer.data_collator([ds[j] for j in range(i, min(i + 8, len(ds)))]))
            batch.pop("kind_id")
            out = model(**batch, fused_lm_head=True)
            total += float((-out.log_probs).sum())
            count += float(out.label_mask.sum())
    model.train()
    return total / count


# -- data ----------------------------------------------------------------------------------------------


def test_methods_use_their_configs(tmp_path, tiny_model_dir, data_dir):
    rows = sample_examples()
    steper = load_step_data("steper", data_dir)
    vanilla = load_step_data("vanilla-kd", data_dir)
    assert steper.counts == {k: len(rows[k]) for k in ("first", "mid", "final")}
    # what the trainer really feeds the loss: the kind ids its collator emits over one epoch
    for method, step_data in (("steper", steper), ("vanilla-kd", vanilla)):
        trainer = _trainer(tmp_path / method, tiny_model_dir, data_dir, method=method)
        seen = torch.cat([batch["kind_id"] for batch in trainer.get_train_dataloader()]).bincount(
            minlength=len(step_data.kinds))
        assert dict(zip(step_data.kinds, seen.tolist())) == {k: len(rows[k]) for k in step_data.kinds}
    assert vanilla.counts == {"vanilla_kd": len(rows["vanilla_kd"])}
    assert {r["kind"] for r in vanilla.rows} == {"vanilla_kd"}
    # vanilla targets hold the whole chain; step targets one sentence each
    assert all("So the answer is" in r["completion"] for r in vanilla.rows)
    assert not any("So the answer is" in r["completion"] for r in steper.rows if r["kind"] == "first")


def test_long_prompt_is_cut_from_the_left_and_keeps_its_completion(tokenizer):
    prompt = "Q: " + " ".join(["filler words about films"] * 200) + " what is the genre?\nA:"
    completion = " The genre is romance. So the answer is: romance."
    ids, labels = encode_example(tokenizer, prompt, completion, max_length=64)
    full_completion = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(ids) == 64
    assert ids[-len(full_completion):] == full_completion
    assert [t for t in labels if t != -100] == full_completion
    assert tokenizer.decode(ids[: len(ids) - len(full_completion)]).endswith("genre?\nA:")  # kept the prompt's end
    assert encode_example(tokenizer, "Q:", " word" * 200, max_length=32) is None  # completion alone too long


def test_trainer_keeps_left_truncated_rows(tmp_path, tiny_model_dir, tokenizer):
    rows = [{"prompt": "Q: " + "long context " * 300 + "\nA:", "completion": " answer sentence.", "kind": "mid"}]
    ds, dropped = tokenize_rows(rows, tokenizer, ("first", "mid", "final"), 48)
    assert dropped == 0 and len(ds[0]["input_ids"]) == 48 and ds[0]["kind_id"] == 1


def test_packing_is_refused_for_steper(tmp_path, tiny_model_dir, data_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, packing=True)
    with pytest.raises(RecipeError, match="packing"):
        train(recipe, method="steper", data=data_dir)


# -- the weighted loss -------------------------------------------------------------------------------


def test_loss_falls_and_sigmas_learn(tmp_path, tiny_model_dir, data_dir):
    trainer = _trainer(tmp_path, tiny_model_dir, data_dir, max_steps=6)
    s0 = trainer.log_vars.s.detach().cpu().clone()
    assert torch.equal(s0, torch.zeros(3)) and trainer.log_vars.s.requires_grad
    before = _dataset_ce(trainer)
    trainer.train()
    after = _dataset_ce(trainer)
    assert len(trainer.loss_curve) == 6 and after < before - 0.3, (before, after)
    assert not torch.equal(trainer.log_vars.s.detach().cpu(), s0)  # s_j got gradients and moved
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert {"sigma_first", "sigma_mid", "sigma_final", "mean_token_accuracy"} <= set(logged[-1])
    assert {"loss_first", "loss_mid", "loss_final"} <= {k for e in logged for k in e}


def test_hard_kind_gets_less_weight(tmp_path, tiny_model_dir):
    # first / final: one fixed sentence (easy); mid: 40 random words (its loss stays high)
    rows = sample_examples(noisy_kind="mid")
    for kind in ("first", "final"):
        for r in rows[kind]:
            r["completion"] = " So the answer is: yes."
    data = write_dataset(tmp_path / "noisy", rows)
    trainer = _trainer(tmp_path, tiny_model_dir, data, max_steps=24, learning_rate=1e-2, sigma_learning_rate=0.1,
                       logging_steps=4)
    trainer.train()
    s = trainer.log_vars.values()
    # weight exp(-s): the random-word kind ends with the smallest weight (the largest sigma), by a margin
    assert s["mid"] > s["first"] + 0.3 and s["mid"] > s["final"] + 0.3, s


def test_uniform_keeps_equal_weights(tmp_path, tiny_model_dir, data_dir):
    trainer = _trainer(tmp_path, tiny_model_dir, data_dir, method="steper-first-mid", max_steps=3)
    trainer.train()
    assert torch.equal(trainer.log_vars.s.detach().cpu(), torch.zeros(3))
    assert not trainer.log_vars.s.requires_grad


def test_batch_without_a_kind_adds_nothing_for_it(tmp_path, tiny_model_dir, data_dir):
    trainer = _trainer(tmp_path, tiny_model_dir, data_dir)
    with torch.no_grad():
        trainer.log_vars.s.copy_(torch.tensor([0.5, -0.3, 0.2], device=trainer.log_vars.s.device))
    batch = trainer._prepare_inputs(trainer.data_collator(
        [trainer.train_dataset[i] for i in range(len(trainer.train_dataset)) if trainer.train_dataset[i]["kind_id"] == 0][:3]))
    trainer._window_counts = None
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    g = trainer.log_vars.s.grad
    assert g[1] == 0 and g[2] == 0 and g[0] != 0  # only the present kind's s_j moves
    # the value is exp(-s_first) * L_first + s_first for that batch
    with torch.no_grad():
        out = trainer.model(**{k: v for k, v in batch.items() if k != "kind_id"}, fused_lm_head=True)
        ce = (-out.log_probs).sum() / out.label_mask.sum()
    assert loss.item() == pytest.approx(float(torch.exp(torch.tensor(-0.5)) * ce + 0.5), rel=1e-5)


def test_labelled_positions_score_as_trls_fused_head(tmp_path, tiny_model_dir, data_dir):
    """The CPU path (LM head on labelled positions only) gives TRL's per-token scores and gradients."""
    from steper_bench.training.trainer import labelled_token_scores

    trainer = _trainer(tmp_path, tiny_model_dir, data_dir)
    model = trainer.model
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(6)]))
    batch.pop("kind_id")
    grads = []
    for score in (lambda: model(**batch, fused_lm_head=True), lambda: labelled_token_scores(model, batch)):
        model.zero_grad()
        out = score()
        (-out.log_probs.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        scores = [out.log_probs.detach(), out.entropy.detach(), out.is_top1.float(), out.label_mask.float()]
        if len(grads) == 1:
            reference = scores
    assert 0 < reference[3].sum() < reference[3].numel()  # some positions labelled, some not
    for ours, trl in zip(scores, reference):
        torch.testing.assert_close(ours, trl, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-6)


# -- checkpoints, LoRA ---------------------------------------------------------------------------------


def test_resume_restores_log_variances_exactly(tmp_path, tiny_model_dir, data_dir):
    first = _trainer(tmp_path, tiny_model_dir, data_dir, max_steps=2, save_steps=2)
    first.train()
    ckpt = tmp_path / "out" / "checkpoints" / "checkpoint-2"
    saved = torch.load(ckpt / "log_variances.pt", weights_only=False)
    assert torch.equal(saved["s"], first.log_vars.s.detach().cpu()) and not torch.equal(saved["s"], torch.zeros(3))

    # a real resume: s_j (and their optimizer state) are back before the first new step
    second = _trainer(tmp_path, tiny_model_dir, data_dir, max_steps=3, save_steps=100)
    assert torch.equal(second.log_vars.s.detach().cpu(), torch.zeros(3))
    seen = {}

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            seen["s"] = second.log_vars.s.detach().cpu().clone()
            seen["adam_step"] = float(second.log_vars_optimizer.state_dict()["state"][0]["step"])

    second.add_callback(Probe())
    second.train(resume_from_checkpoint=str(ckpt))
    assert torch.equal(seen["s"], saved["s"])
    assert seen["adam_step"] == float(saved["optimizer"]["state"][0]["step"]) == 2.0
    assert second.state.global_step == 3
    assert len(second.loss_curve) == 3 and second.loss_curve[:2] == saved["loss_curve"]


def test_lora_trains_only_adapters_and_sigmas(tmp_path, tiny_model_dir, data_dir):
    trainer = _trainer(tmp_path, tiny_model_dir, data_dir, max_steps=3, lora={"enabled": True, "r": 4, "alpha": 8})
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed)
    assert not torch.equal(trainer.log_vars.s.detach().cpu(), torch.zeros(3))


# -- the public train() -----------------------------------------------------------------------------------


def test_train_writes_model_weights_summary_card_and_skips_rerun(tmp_path, tiny_model_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, max_steps=3)
    paths = RunPaths.for_recipe(recipe)
    data_dir = write_dataset(paths.dataset, sample_examples())  # this recipe's own build
    res = train(recipe, method="steper")
    out = res.output_dir
    assert out.name.startswith("steper-") and not res.skipped_existing and res.steps == 3
    weights = json.loads((out / "weights.json").read_text())
    assert {"first", "mid", "final", "history", "s"} <= set(weights)
    assert weights["first"] == pytest.approx(res.sigmas["first"])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["n_examples"] == load_step_data("steper", data_dir).counts
    assert summary["train_hash"] == recipe.train_hash("steper") and summary["versions"]["trl"]
    assert summary["method_spec"] == {"kinds": ["first", "mid", "final"], "weighting": "difficulty", "weights": None}
    assert (summary["trained_on"], summary["train_build"], summary["train_questions"]) == (
        "hotpotqa", recipe.stage_hash("build"), None)
    assert summary["loss"]["first"] is not None and summary["steps"] == 3
    card = (out / "README.md").read_text()
    assert "steper" in card and recipe.hash in card and "sigma" in card
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    assert not (out / "checkpoints").exists()
    # the data of this recipe's build: named by recipe and build hash, no absolute path anywhere
    build = recipe.stage_hash("build")
    assert summary["dataset"] == f"t build {build}" and summary["dataset_revision"] == build
    assert summary["dataset_path"] == f"t-{build}/dataset"
    data_line = next(line for line in card.splitlines() if line.startswith("| training data"))
    assert f"t build {build}" in data_line and f"t-{build}/dataset" in data_line and str(tmp_path) not in data_line
    assert "datasets:" not in card.split("---")[1]  # no Hub dataset in the front matter

    # a skip reports its own (near-zero) time; the training's stays in the summary
    summary["seconds"] = 1234.5
    (out / "train_summary.json").write_text(json.dumps(summary))
    again = train(recipe, method="steper")
    assert again.skipped_existing and again.sigmas == pytest.approx(res.sigmas)
    assert again.seconds < 5.0 and again.summary["seconds"] == 1234.5


def test_vanilla_kd_plain_cross_entropy(tmp_path, tiny_model_dir, data_dir):
    # the trainer's loss on a batch is the plain mean token cross-entropy over completion tokens
    trainer = _trainer(tmp_path, tiny_model_dir, data_dir, method="vanilla-kd")
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)  # the window counts, as in training
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    assert (labels != -100).sum() < labels.numel()  # the prompt tokens are masked out
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
    assert loss.item() == pytest.approx(ce.item(), rel=1e-5)

    recipe = make_recipe(tmp_path, tiny_model_dir, max_steps=2)
    res = train(recipe, method="vanilla-kd", data=data_dir)
    assert res.n_examples == {"vanilla_kd": len(sample_examples()["vanilla_kd"])}
    weights = json.loads((res.output_dir / "weights.json").read_text())
    assert weights["weighting"] == "uniform" and weights["vanilla_kd"] == 1.0


def test_vanilla_kd_may_pack(tmp_path, tiny_model_dir, data_dir):
    recipe = make_recipe(tmp_path, tiny_model_dir, max_steps=2, packing=True)
    res = train(recipe, method="vanilla-kd", data=data_dir)  # stock SFTTrainer packs the tokenised rows
    assert res.steps == 2 and json.loads((res.output_dir / "train_summary.json").read_text())["loss"]["first"]


def test_methods_are_presets_or_validated_specs(tmp_path):
    r = make_recipe(tmp_path, "tiny", methods=["steper", "vanilla-kd", {"name": "fixed-2-1-1", "kinds": ["first", "mid", "final"],
                                               "weighting": "fixed", "weights": {"first": 2, "mid": 1, "final": 1}}])
    assert [m.name for m in r.train.methods] == ["steper", "vanilla-kd", "fixed-2-1-1"]
    assert r.method("fixed-2-1-1").weight_list() == [2.0, 1.0, 1.0] and r.method("steper-first").kinds == ("first", "final")
    with pytest.raises(RecipeError, match=r"train.methods: 'stepr' is not a method preset; did you mean 'steper'\?"):
        make_recipe(tmp_path, "tiny", methods=["stepr"])
    bad = [({"name": "w", "kinds": ["first"], "weighting": "fixed"}, "needs weights for exactly its kinds"),
           ({"name": "w", "kinds": ["first"], "weighting": "fixed", "weights": {"first": 0}}, "must be positive"),
           ({"name": "w", "kinds": ["first"], "weights": {"first": 1}}, "weights are for weighting fixed"),
           ({"name": "w", "kinds": []}, "kinds is empty"),
           ({"name": "steper", "kinds": ["final"]}, "the name of a preset"),
           ({"name": "w", "kinds": ["final", "final"]}, "repeat a kind")]
    for spec, message in bad:
        with pytest.raises(RecipeError, match=message):
            make_recipe(tmp_path, "tiny", methods=[spec])
    with pytest.raises(RecipeError, match="appear more than once"):
        make_recipe(tmp_path, "tiny", methods=["steper", "steper"])
    with pytest.raises(RecipeError, match="not in train.methods"):
        r.method("nonesuch")


def test_each_method_has_its_own_train_hash(tmp_path):
    one = make_recipe(tmp_path, "tiny", methods=["steper"])
    two = make_recipe(tmp_path, "tiny", methods=["steper", "vanilla-kd"])
    assert one.train_hash("steper") == two.train_hash("steper")  # adding a method retrains nothing
    assert two.train_hash("steper") != two.train_hash("vanilla-kd")
    lr = make_recipe(tmp_path, "tiny", methods=["steper"], learning_rate=1e-4)
    assert lr.train_hash("steper") != one.train_hash("steper") and lr.stage_hash("build") == one.stage_hash("build")


def test_fixed_weights_are_applied_exactly(tmp_path, tiny_model_dir, data_dir):
    spec = {"name": "fixed-3-1-2", "kinds": ["first", "mid", "final"], "weighting": "fixed",
            "weights": {"first": 3, "mid": 1, "final": 2}}
    trainer = _trainer(tmp_path, tiny_model_dir, data_dir, method="fixed-3-1-2", methods=[spec])
    assert not trainer.log_vars.s.requires_grad and trainer.log_vars_optimizer is None
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer._prepare_inputs(trainer.data_collator([next(r for r in rows if r["kind_id"] == k) for k in (0, 1, 2)]
                                                          + [next(r for r in rows[5:] if r["kind_id"] == 0)]))
    trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # by hand: each kind's mean token cross-entropy over its rows, then 3 L_first + 1 L_mid + 2 L_final
    labels = batch["labels"][:, 1:]
    tok = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels, ignore_index=-100,
                                            reduction="none")
    per_kind = []
    for k in range(3):
        rows_k = batch["kind_id"] == k
        per_kind.append(tok[rows_k].sum() / (labels[rows_k] != -100).sum())
    assert loss.item() == pytest.approx(float(3 * per_kind[0] + per_kind[1] + 2 * per_kind[2]), rel=1e-5)


def test_train_questions_samples_the_same_questions_for_every_method(tmp_path, data_dir):
    rows = sample_examples()
    steper = load_step_data("steper", data_dir, train_questions=5, seed=3)
    vanilla = load_step_data("vanilla-kd", data_dir, train_questions=5, seed=3)
    assert len(vanilla.rows) == 5 and len(steper.rows) < sum(len(rows[k]) for k in ("first", "mid", "final"))
    qid = {r["prompt"]: q["question_id"] for k in rows for q in rows[k] for r in [q]}
    assert {qid[r["prompt"]] for r in steper.rows} == {qid[r["prompt"]] for r in vanilla.rows}
    other = load_step_data("vanilla-kd", data_dir, train_questions=5, seed=4)
    assert {r["prompt"] for r in other.rows} != {r["prompt"] for r in vanilla.rows}
    with pytest.raises(RecipeError, match="train.train_questions: 99 asked for, but .* has 12"):
        load_step_data("steper", data_dir, train_questions=99)

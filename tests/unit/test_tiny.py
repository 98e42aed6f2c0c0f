"""The tiny test model: loads with the Auto classes, generates, is deterministic."""

from __future__ import annotations

import hashlib
import json

import pytest

from steper_bench.tiny import build_tiny_model, sample_texts


def test_loads_and_generates(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert tok.padding_side == "left"
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>" and tok.bos_token == "<s>"
    assert model.config.num_hidden_layers == 2
    enc = tok(["Q: Who directed the film?\nA:", "Q: Which city?\nA:"], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, enc["input_ids"].shape[1] + 4)
    # The tokenizer was trained on the sample: common words are single tokens, not bytes.
    assert len(tok("the film")["input_ids"]) <= 3
    assert "not a result" in (tiny_model_dir / "README.md").read_text()


def test_chat_template_renders(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("user: hello\nassistant:")


def _digest(d):
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")}


def test_deterministic_for_same_texts_and_seed(tmp_path):
    texts = sample_texts()[:200]
    a = build_tiny_model(tmp_path / "a", texts, seed=1, vocab_size=300, max_positions=256)
    b = build_tiny_model(tmp_path / "b", texts, seed=1, vocab_size=300, max_positions=256)
    c = build_tiny_model(tmp_path / "c", texts, seed=2, vocab_size=300, max_positions=256)
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]


def test_empty_texts_rejected(tmp_path):
    with pytest.raises(ValueError, match="non-empty text"):
        build_tiny_model(tmp_path / "x", ["", "  "])


def test_sample_texts_from_a_recipe(repo_root):
    from steper_bench.recipe import Recipe

    data = repo_root / "data" / "musique"
    recipe = Recipe(source={"dataset": "musique", "train_file": str(data / "train.jsonl"),
                            "test_file": str(data / "dev.jsonl"), "test_limit": None})
    texts = sample_texts(recipe)
    first_dev = json.loads((data / "dev.jsonl").read_text().splitlines()[0])
    assert first_dev["question"] in texts and len(texts) > 80


def test_tied_embeddings_share_one_matrix_after_loading(tmp_path):
    from transformers import AutoModelForCausalLM

    texts = sample_texts()[:100]
    tied = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "t", texts, vocab_size=300, tie_embeddings=True))
    untied = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "u", texts, vocab_size=300))
    assert tied.lm_head.weight.data_ptr() == tied.get_input_embeddings().weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.get_input_embeddings().weight.data_ptr()
    n = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert n == tied.get_input_embeddings().weight.numel()

"""A tiny random causal LM built offline: a pipeline demo, not a result.

`build_tiny_model` trains a byte-level BPE tokenizer on some texts and pairs it with a randomly
initialised 2-layer Llama, saved with `save_pretrained`, so that every stage (local generation,
`transformers serve`, training, evaluation) runs end to end on a laptop without the Hub.
The same texts and seed give the same tokenizer and the same weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

# Plain role-tagged turns; ends with the assistant tag when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ m['role'] }}: {{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)

README = """# Tiny random model

tiny random model: a pipeline demo, not a result.

A {layers}-layer Llama-style causal LM with random weights (seed {seed}) and a {vocab}-token
byte-level BPE tokenizer trained on {n_texts} texts from the shipped sample data. Built by
`steper_bench.tiny.build_tiny_model` so the pipeline runs offline; its outputs are noise.
"""

# Repo root when running from a source checkout (benchmark/steper_bench/tiny.py -> repo).
_REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = _REPO_ROOT / "data"


def _train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # train_from_iterator is deterministic for a fixed input order.
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_tiny_model(
    out_dir: Path,
    texts: Iterable[str],
    *,
    seed: int = 0,
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 2048,
    tie_embeddings: bool = False,
) -> Path:
    """Train a BPE tokenizer on `texts`, build a random Llama, save both into `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("build_tiny_model needs at least one non-empty text to train a tokenizer")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(texts, vocab_size),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",  # decoder-only batched generation
        model_max_length=max_positions,
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_embeddings,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # what the results store names this student by (as the trained students' base_model)
    (out_dir / "SOURCE.json").write_text(json.dumps({"spec": "tiny (built offline)", "seed": seed}) + "\n")
    (out_dir / "README.md").write_text(
        README.format(layers=layers, seed=seed, vocab=len(tokenizer), n_texts=len(texts))
    )
    return out_dir


def _hotpot_texts(path: Path) -> list[str]:
    out: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            out.append(rec["question"])
            for title, sentences in rec.get("context", []):
                out.append(f"{title}\n{''.join(sentences)}")
    return out


def sample_texts(recipe_or_files=None) -> list[str]:
    """Questions and paragraph texts to train the tiny tokenizer on.

    Accepts a Recipe (its splits are loaded through `steper_bench.sources`), a list of
    HotpotQA-format JSONL files, or None for the shipped HotpotQA sample.
    """
    if recipe_or_files is not None and hasattr(recipe_or_files, "source"):
        return _recipe_texts(recipe_or_files)
    files = recipe_or_files
    if files is None:
        files = [SAMPLE_DIR / "hotpotqa" / "train.jsonl", SAMPLE_DIR / "hotpotqa" / "dev.jsonl"]
    elif isinstance(files, (str, Path)):
        files = [files]
    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise FileNotFoundError(
            f"sample data not found: {', '.join(missing)} (run from a source checkout, or pass "
            "the HotpotQA JSONL files explicitly)"
        )
    out: list[str] = []
    for f in files:
        out.extend(_hotpot_texts(Path(f)))
    return out


def _recipe_texts(recipe) -> list[str]:
    """Texts of a recipe's questions (any of the three datasets) via `steper_bench.sources`."""
    from steper_bench.sources import load_questions

    src = recipe.source
    splits = [s for s in ("train", "test") if src.has_split(s)]
    out: list[str] = []
    for split in splits:
        for q in load_questions(recipe, split).questions:
            out.append(q.question)
            out.extend(f"{p.title}\n{p.text}" for p in q.paragraphs)
    return out

"""Step-wise training data: load the built dataset, pick the configs a method trains on, tokenise.

A built dataset is a folder in the Hub layout (`DIR/<config>/<split>-*.parquet`) or a Hub dataset
id. A method (steper_bench/methods.py) names the configs it trains on: StepER `first`, `mid`
and `final`; Vanilla-KD `vanilla_kd` (all paragraphs -> the whole chain as one target).
`train.train_questions: N` keeps the rows of a seeded sample of N questions (the same questions
for every method and kind).

Tokenisation is ours, not TRL's: the prompt and the completion are tokenised separately (exactly
what the student sees at inference: the prompt alone, then it generates), and an over-long
example loses tokens from the LEFT of its prompt, never from its completion. TRL then receives
ready `input_ids` / `labels` and leaves them alone.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from steper_bench.methods import KINDS, Method
from steper_bench.recipe import RecipeError

log = logging.getLogger(__name__)


@dataclass
class StepData:
    """The examples of one method, with where they came from."""

    source: str  # local folder or Hub id
    revision: str | None  # Hub commit (resolved when possible) or None for a local folder
    kinds: tuple[str, ...]  # kind names, index = kind id
    rows: list[dict] = field(default_factory=list)  # prompt, completion, kind (str)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r["kind"] for r in self.rows)
        return {k: c.get(k, 0) for k in self.kinds}


def is_local(data: str | Path) -> bool:
    return Path(data).expanduser().exists()


def load_config(data: str | Path, config: str, *, split: str = "train", revision: str | None = None):
    """One config of a built dataset as a `datasets.Dataset` (None when a local folder lacks it)."""
    import datasets

    if is_local(data):
        import pyarrow.parquet as pq

        files = sorted(str(p) for p in (Path(data).expanduser() / config).glob(f"{split}-*.parquet"))
        # No file, or only empty ones (e.g. no mid steps in a single-step build): nothing to load.
        if not files or not sum(pq.ParquetFile(f).metadata.num_rows for f in files):
            return None
        return datasets.load_dataset("parquet", data_files={split: files}, split=split)
    return datasets.load_dataset(str(data), config, split=split, revision=revision)


def load_step_data(method: Method, data: str | Path, *, revision: str | None = None, split: str = "train",
                   train_questions: int | None = None, seed: int = 0) -> StepData:
    """The rows a method trains on, kind = the config each row came from; with `train_questions`,
    only the rows of that many questions (a seeded sample, the same for every method)."""
    kinds = tuple(method.kinds)
    out = StepData(source=str(data), revision=revision if not is_local(data) else None, kinds=kinds)
    keep = sample_questions(data, train_questions, seed, revision=revision, split=split) if train_questions else None
    for config in kinds:
        ds = load_config(data, config, split=split, revision=revision)
        if ds is None:
            log.info("%s: no %s rows in %s; training without %r examples", data, split, config, config)
            continue
        missing = {"prompt", "completion"} - set(ds.column_names)
        if missing:
            raise RecipeError(f"{data} config {config!r} lacks columns {sorted(missing)} (need prompt, completion)")
        qids = ds["question_id"] if keep is not None else [None] * ds.num_rows
        for prompt, completion, qid in zip(ds["prompt"], ds["completion"], qids):
            if keep is None or qid in keep:
                out.rows.append({"prompt": prompt, "completion": completion, "kind": config})
    if not out.rows:
        raise RecipeError(
            f"{data}: no {split} examples in configs {', '.join(kinds)} for method {method.name!r}; "
            "build the dataset first (steper-bench build RECIPE) or pass --data DIR_OR_HUB_ID"
        )
    if not is_local(data):
        out.revision = resolve_hub_revision(str(data), revision)
    return out


def sample_questions(data, n: int, seed: int, *, revision: str | None = None, split: str = "train") -> set[str]:
    """A seeded sample of n question ids among those with kept trajectories (random.Random(seed)
    over the sorted ids, so every method and kind gets the same questions)."""
    ds = load_config(data, "vanilla_kd", split=split, revision=revision)  # one row per kept trajectory
    ids = sorted(set(ds["question_id"])) if ds is not None else []
    if n > len(ids):
        raise RecipeError(f"train.train_questions: {n} asked for, but {data} has {len(ids)} {split} questions with "
                          f"kept trajectories; lower it or build more (source.train_limit)")
    return set(random.Random(seed).sample(ids, n))


def resolve_hub_revision(repo: str, revision: str | None) -> str | None:
    """The commit a Hub dataset revision points to, for the record (None if the Hub cannot say)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo, revision=revision).sha or revision
    except Exception as e:  # offline or emulator without the endpoint: keep what was asked for
        log.info("could not resolve %s@%s to a commit: %s", repo, revision, e)
        return revision


def all_texts(data: str | Path, *, revision: str | None = None) -> list[str]:
    """Prompts and completions of every step config: what a tiny student's tokenizer learns from."""
    texts: list[str] = []
    for config in KINDS:
        try:
            ds = load_config(data, config, revision=revision)
        except Exception as e:  # a Hub dataset without this config
            log.info("no %s config in %s: %s", config, data, e)
            continue
        if ds is not None:
            texts.extend(ds["prompt"])
            texts.extend(ds["completion"])
    return texts


def encode_example(tokenizer, prompt: str, completion: str, max_length: int) -> tuple[list[int], list[int]] | None:
    """input_ids and labels (-100 on the prompt) for one example, at most `max_length` tokens.

    Over-long examples lose prompt tokens from the left (after a leading BOS, which stays); the
    completion is never cut. An example whose completion alone does not fit returns None.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]  # cut below
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not completion_ids or completion_ids[-1] != eos):
        completion_ids = completion_ids + [eos]
    overflow = len(prompt_ids) + len(completion_ids) - max_length
    if overflow > 0:
        keep_bos = 1 if prompt_ids and prompt_ids[0] == tokenizer.bos_token_id else 0
        body = prompt_ids[keep_bos:]
        if overflow >= len(body):  # not even one prompt token would be left
            return None
        prompt_ids = prompt_ids[:keep_bos] + body[overflow:]
    return prompt_ids + completion_ids, [-100] * len(prompt_ids) + completion_ids


def tokenize_rows(rows: list[dict], tokenizer, kinds: tuple[str, ...], max_length: int):
    """A `datasets.Dataset` with input_ids, labels, kind_id; and how many rows were dropped."""
    import datasets

    kind_index = {k: i for i, k in enumerate(kinds)}
    cols: dict[str, list] = {"input_ids": [], "labels": [], "kind_id": []}
    dropped = 0
    for r in rows:
        enc = encode_example(tokenizer, r["prompt"], r["completion"], max_length)
        if enc is None:
            dropped += 1
            continue
        cols["input_ids"].append(enc[0])
        cols["labels"].append(enc[1])
        cols["kind_id"].append(kind_index[r["kind"]])
    if dropped:
        log.warning("dropped %d examples whose completion alone exceeds max_length=%d", dropped, max_length)
    if not cols["input_ids"]:
        raise RecipeError(f"every example's completion exceeds train.max_length={max_length}: raise it")
    return datasets.Dataset.from_dict(cols), dropped

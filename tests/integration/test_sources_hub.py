"""`source.hub_id` through the real Hub code path (huggingface_hub + datasets over HTTP) against the
local Hub emulator: a repo laid out like `hotpotqa/hotpot_qa` (config `distractor`, parquet in the
Hub's dict-of-lists shape) loads into the same Questions as the shipped JSONL, and
`source.hub_revision` pins an older commit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from support.hub_emulator import client_env, hub_emulator

from steper_bench.recipe import validate_recipe
from steper_bench.sources import load_questions

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "hotpotqa"
REPO_ID = "tester/hotpot_qa"
N_TRAIN, N_DEV = 20, 10
README = b"""---
configs:
- config_name: distractor
  data_files:
  - split: train
    path: distractor/train-*.parquet
  - split: validation
    path: distractor/validation-*.parquet
---
# hotpot_qa (test copy)
"""

# Loads each recipe's source in one process (HF_ENDPOINT is read when huggingface_hub imports).
LOAD = """
import json, sys, datasets
datasets.config.USE_PARQUET_EXPORT = False
from steper_bench.recipe import validate_recipe
from steper_bench.sources import load_questions
out = []
for source, split in json.loads(sys.argv[1]):
    res = load_questions(validate_recipe({"source": source}), split)
    out.append({"questions": [q.to_dict() for q in res.questions], "origin": res.path_or_id,
                "revision": res.revision, "skipped": len(res.skipped)})
print(json.dumps(out))
"""


def _records(name: str, n: int) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _hub_parquet(records: list[dict]) -> bytes:
    """The Hub's hotpot_qa row shape (the same conversion as tests/unit/test_sources.py)."""
    rows = []
    for r in records:
        sf, ctx = r["supporting_facts"], r["context"]
        rows.append({
            "id": r["_id"], "question": r["question"], "answer": r["answer"], "type": r["type"], "level": r["level"],
            "supporting_facts": {"title": [t for t, _ in sf], "sent_id": [i for _, i in sf]},
            "context": {"title": [t for t, _ in ctx], "sentences": [s for _, s in ctx]},
        })
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _local(split: str, n: int) -> list[dict]:
    """The same records through the local-file path (through JSON, like the subprocess's: tuples -> lists)."""
    r = validate_recipe({"source": {"dataset": "hotpotqa", "train_file": str(DATA / "train.jsonl"),
                                    "test_file": str(DATA / "dev.jsonl"), "train_limit": None, "test_limit": None}})
    return json.loads(json.dumps([q.to_dict() for q in load_questions(r, split).questions[:n]]))


def test_hub_id_loads_through_the_hub_and_hub_revision_pins_a_commit(tmp_path):
    train, dev = _records("train.jsonl", N_TRAIN), _records("dev.jsonl", N_DEV)
    changed = [dict(train[0], answer="CHANGED ANSWER"), *train[1:]]
    with hub_emulator() as (url, state):
        first = state.seed_repo(REPO_ID, {
            "README.md": README,
            "distractor/train-00000-of-00001.parquet": _hub_parquet(train),
            "distractor/validation-00000-of-00001.parquet": _hub_parquet(dev),
        }).branches["main"]
        # A second commit edits one training answer: main moves on, `first` still has the old data.
        state.seed_repo(REPO_ID, {"distractor/train-00000-of-00001.parquet": _hub_parquet(changed)})
        assert state.head(REPO_ID) != first

        src = {"dataset": "hotpotqa", "hub_id": REPO_ID, "hub_config": "distractor",
               "train_limit": None, "test_limit": None}
        cases = [(src, "train"), (src, "test"), ({**src, "hub_revision": first}, "train")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(client_env(url, token="hf_test", home=str(tmp_path / "hf")))
        p = subprocess.run([sys.executable, "-c", LOAD, json.dumps(cases)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        head_train, head_test, pinned_train = json.loads(p.stdout)
        # It really went over HTTP to the emulator (not a local folder or a cache).
        assert any("/resolve/" in path and path.endswith(".parquet") for _, path in state.requests)

    local_train, local_test = _local("train", N_TRAIN), _local("test", N_DEV)
    assert local_train[0]["answers"][0] != "CHANGED ANSWER"

    # Pinned to the first commit: exactly the local JSONL (ids, answers, paragraphs, supporting flags).
    assert pinned_train["questions"] == local_train
    assert pinned_train["revision"] == first and pinned_train["skipped"] == 0
    assert head_test["questions"] == local_test
    assert head_test["origin"] == f"hub:{REPO_ID}/distractor:validation"
    assert any(p["is_supporting"] for q in local_test for p in q["paragraphs"])  # flags are compared, not all False

    # main: the second commit's edit, everything else unchanged.
    assert head_train["questions"][0]["answers"] != local_train[0]["answers"]
    assert head_train["questions"][0]["answers"][0] == "CHANGED ANSWER"
    assert head_train["questions"][1:] == local_train[1:]
    assert head_train["origin"] == f"hub:{REPO_ID}/distractor:train" and head_train["revision"] is None

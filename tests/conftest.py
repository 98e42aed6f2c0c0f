"""Shared fixtures: the repository root and one tiny random model per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Nothing in the tests may reach the Hub; tiny models and local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two torch threads
# per process contend badly (measured: 60 training steps of the tiny model 0.8 s with one thread,
# 10 s with two under load). Set before anything imports torch; override with OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama + BPE tokenizer trained on the shipped HotpotQA sample."""
    from steper_bench.tiny import build_tiny_model, sample_texts

    files = [REPO_ROOT / "data" / "hotpotqa" / "train.jsonl", REPO_ROOT / "data" / "hotpotqa" / "dev.jsonl"]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), sample_texts(files), seed=0)

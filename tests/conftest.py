"""Shared fixtures (the repository root, one tiny random model per test session) and the
reliability figures table, gathered from pytest-xdist workers when the run is parallel."""

from __future__ import annotations

import json
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


# -- the reliability figures table ----------------------------------------------------------------


def pytest_sessionfinish(session):
    """A worker hands its figures to the controller (pytest-xdist's workeroutput)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        from support.reliability import FIGURES

        output["reliability_figures"] = json.dumps(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from support.reliability import FIGURES

    for case, counts in json.loads(getattr(node, "workeroutput", {}).get("reliability_figures", "{}")).items():
        for k, v in counts.items():
            FIGURES[case][k] += v


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from support.reliability import FIGURES

    if not FIGURES or getattr(config, "workeroutput", None) is not None:
        return
    tr = terminalreporter
    tr.section("reliability figures")
    tr.write_line(f"{'case':52} {'faults':>7} {'completed':>10} {'lost':>5}")
    for case, f in sorted(FIGURES.items()):
        tr.write_line(f"{case:52} {f['faults']:>7} {f['completed']:>10} {f['lost']:>5}")
    total = {k: sum(f[k] for f in FIGURES.values()) for k in ("faults", "completed", "lost")}
    tr.write_line(f"{'total':52} {total['faults']:>7} {total['completed']:>10} {total['lost']:>5}")

"""The difficulty-aware loss is exact under gradient accumulation and data parallelism: one
optimizer step over a window of 2 or 4 micro-batches, or over 2 CPU processes, computes the
same loss, gradients and sigma update as one batch of the same eight examples.

Every micro-batch (and every rank) lacks at least one kind (tests/support/ga_window.py), which
is where a per-micro-batch denominator or a regulariser counted once per micro-batch goes wrong.
Gradients are compared before any optimizer step: AdamW's first update is sign-like and would
hide a gradient off by a constant factor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from support.ga_window import WINDOW_KINDS, one_step
from test_training import sample_examples, write_dataset

REPO = Path(__file__).resolve().parents[2]
TOL = {"rtol": 1e-4, "atol": 1e-7}


@pytest.fixture(scope="module")
def window_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ga-data"), sample_examples(n_questions=6))


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory, tiny_model_dir, window_data) -> dict:
    return one_step(str(tiny_model_dir), str(window_data), str(tmp_path_factory.mktemp("ga-ref")), 8, 1)


def assert_same_step(got: dict, ref: dict) -> None:
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    for key in ("loss", "ce"):
        assert got["curve"][0][key] == pytest.approx(ref["curve"][0][key], rel=1e-5), key
    assert got["grads"].keys() == ref["grads"].keys()
    for name, g in ref["grads"].items():
        torch.testing.assert_close(got["grads"][name], g, **TOL, msg=lambda m, n=name: f"{n}: {m}")
    torch.testing.assert_close(got["s_grad"], ref["s_grad"], **TOL)
    torch.testing.assert_close(got["s_after"], ref["s_after"], **TOL)
    # the model's AdamW step: lr x g / (|g| + eps), so a gradient near eps may move it by up to lr
    for name, p in ref["params"].items():
        torch.testing.assert_close(got["params"][name], p, rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_reference_step_has_evidence(one_batch):
    # the comparison below is not between zeros: every kind has a gradient and every s_j moved
    assert len(set(WINDOW_KINDS)) == 3 and one_batch["world"] == 1
    assert (one_batch["s_grad"] != 0).all() and (one_batch["s_after"] != one_batch["s_before"]).all()
    assert sum(float(g.abs().sum()) for g in one_batch["grads"].values()) > 0
    # at s = 0 the objective is sum_j L_j, about 3 x the mean token CE of a random model
    assert one_batch["loss"] > 2 * one_batch["curve"][0]["ce"]


@pytest.mark.parametrize("batch,accumulation", [(4, 2), (2, 4)])
def test_accumulated_window_equals_one_batch(tmp_path, tiny_model_dir, window_data, one_batch, batch, accumulation):
    got = one_step(str(tiny_model_dir), str(window_data), str(tmp_path), batch, accumulation)
    assert_same_step(got, one_batch)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two torchrun workers import torch + transformers: about 25 s on 2 busy cores
def test_two_processes_equal_one_batch(tmp_path, tiny_model_dir, window_data, one_batch):
    # 2 ranks x 2 micro-batches of 2: rank 0 gets micro-batches 1 and 3 (no mid example at all)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(REPO / "tests" / "support" / "ga_window.py"),
        str(tiny_model_dir),
        str(window_data),
        str(tmp_path),
        "2",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "benchmark"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    local = [r["s_grad_local"] for r in ranks]
    assert local[0][1] == 0 and local[1][1] != 0  # the mid kind really was absent from rank 0
    for r in ranks:
        assert_same_step(r, one_batch)

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

import steper_bench

torch = pytest.importorskip("torch")

from support.ga_window import WINDOW_KINDS, make_trainer, one_step, window_indices
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
    for kind in sorted(set(WINDOW_KINDS)):  # each kind's logged token cross-entropy, summed over the micro-batches
        assert got["logged"][f"loss_{kind}"] == pytest.approx(ref["logged"][f"loss_{kind}"], rel=1e-5), kind
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
    # at s = 0 the objective is sum_j L_j, about 3 x the mean token CE of a random model (~ln 512)
    curve = one_batch["curve"]
    assert [p["step"] for p in curve] == [1] and 5 < curve[0]["ce"] < 7.5
    assert curve[0]["loss"] == pytest.approx(one_batch["loss"], rel=1e-5) and one_batch["loss"] > 2 * curve[0]["ce"]
    per_kind = [one_batch["logged"][f"loss_{k}"] for k in ("first", "mid", "final")]
    assert one_batch["loss"] == pytest.approx(sum(per_kind), rel=1e-5)


def _forward(trainer, batch):
    with torch.no_grad():
        return trainer.model(**{k: v for k, v in batch.items() if k != "kind_id"}, fused_lm_head=True)


def test_loss_bookkeeping_on_one_batch(tmp_path, tiny_model_dir, window_data):
    """compute_loss on hand-made batches: window token counts are the tokens the loss scores, a
    kind with a single scored token is divided by 1, evaluation neither uses nor feeds the
    training window, and return_outputs returns the outputs."""
    trainer = make_trainer(str(tiny_model_dir), str(window_data), str(tmp_path), 8, 1)
    ds = trainer.train_dataset
    rows = [ds[i] for i in window_indices(ds, trainer.kinds)[:4]]  # first first mid first
    batch = trainer._prepare_inputs(trainer.data_collator(rows))
    # every real token scored (position 1 included), except the one mid row keeps a single token
    labels = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
    mid = batch["kind_id"] == 1
    last = batch["attention_mask"][mid].sum() - 1
    labels[mid, :last] = -100
    batch["labels"] = labels
    out = _forward(trainer, batch)
    scored = out.label_mask.float().sum(-1)
    trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)
    want = torch.zeros(3).index_add(0, batch["kind_id"].cpu(), scored.cpu())
    assert torch.equal(trainer._window_counts.cpu(), want) and want[1] == 1
    token_loss = (-out.log_probs).sum(-1).cpu()
    per_kind = torch.zeros(3).index_add(0, batch["kind_id"].cpu(), token_loss) / want.clamp(min=1)
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    assert loss.item() == pytest.approx(float(per_kind.sum()), rel=1e-5)  # s = 0: sum_j L_j
    assert trainer._window_acc[0].item() == pytest.approx(loss.item(), rel=1e-6)
    # evaluation: the batch's own counts, whatever the window says, and no training bookkeeping
    acc, log_acc = trainer._window_acc.clone(), trainer._log_acc.clone()
    trainer._window_counts = want * 3
    trainer.model.eval()
    loss_eval, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    assert loss_eval.item() == pytest.approx(float(per_kind.sum()), rel=1e-5)
    assert torch.equal(outputs.label_mask, out.label_mask)
    assert torch.equal(trainer._window_acc, acc) and torch.equal(trainer._log_acc, log_acc)


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
def test_two_processes_equal_one_batch(tmp_path, tiny_model_dir, window_data):
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
    # the workers import the very package this test imported (under mutation testing: the mutant)
    package_root = str(Path(steper_bench.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    local = [r["s_grad_local"] for r in ranks]
    assert local[0][1] == 0 and local[1][1] != 0  # the mid kind really was absent from rank 0
    # The reference, computed here rather than taken from the shared fixture: so that mutation
    # testing (which maps each test to the functions it calls in its own process) runs this test
    # against the trainer's data-parallel branches.
    reference = one_step(str(tiny_model_dir), str(window_data), str(tmp_path / "reference"), 8, 1)
    for r in ranks:
        assert_same_step(r, reference)

"""`steper-bench train` end to end in a subprocess: the tiny offline student on a local step-wise
dataset, then a Hub dataset id and a push, both against the local Hub emulator."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from support.hub_emulator import client_env, hub_emulator

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "hotpotqa" / "train.jsonl"
MARKER = "hf_MARKERtoken0123456789SECRET"
CONFIGS = ("first", "mid", "final", "vanilla_kd")


def stepwise_rows(n_questions: int = 8) -> dict[str, list[dict]]:
    """first / mid / final / vanilla_kd rows from the HotpotQA sample's supporting facts."""
    rows: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for line in SAMPLE.read_text().splitlines()[:n_questions]:
        q = json.loads(line)
        paras = {t: "".join(s) for t, s in q["context"]}
        facts = [t for t, _ in q["supporting_facts"]][:2]
        chain = [f"{t} is relevant." for t in facts] + [f"So the answer is: {q['answer']}."]
        ctx = " ".join(f"{t}: {paras.get(t, '')[:150]}" for t in facts)
        for i, sentence in enumerate(chain):
            kind = "first" if i == 0 else "final" if i == len(chain) - 1 else "mid"
            rows[kind].append(_row(q, kind, i, f"Q: {q['question']}\nP: {ctx}\nA:{' '.join(chain[:i])}", " " + sentence))
        rows["vanilla_kd"].append(_row(q, "vanilla_kd", 0, f"Q: {q['question']}\nP: {ctx}\nA:", " " + " ".join(chain)))
    return rows


def _row(q, kind, i, prompt, completion) -> dict:
    return {"id": f"{q['_id']}-{kind}-{i}", "question_id": q["_id"], "dataset": "hotpotqa", "split": "train",
            "kind": kind, "step_index": i, "prompt": prompt, "completion": completion, "retrieved_pids": ["p"],
            "context_pids": ["p"], "teacher": "supporting-facts", "recipe_hash": "test"}


def parquet_files(rows: dict[str, list[dict]]) -> dict[str, bytes]:
    out = {}
    for config, items in rows.items():
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(items), buf)
        out[f"{config}/train-00000-of-00001.parquet"] = buf.getvalue()
    return out


def write_recipe(tmp_path: Path, **train) -> Path:
    recipe = {"name": "train-cli", "runs_dir": str(tmp_path / "runs"), "source": {"train_file": str(SAMPLE)},
              "train": {"methods": ["steper", "vanilla-kd"], "student": "tiny", "learning_rate": 1e-3,
                        "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "max_length": 256,
                        "logging_steps": 1, **train}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:  # torchrun's --master_port 0 leaves the workers waiting forever
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "steper_bench", "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)


@pytest.mark.slow
def test_cli_trains_each_method_then_skips(tmp_path):
    data = tmp_path / "dataset"
    for name, blob in parquet_files(stepwise_rows()).items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(blob)
    recipe = write_recipe(tmp_path)
    p = run_cli([str(recipe), "--data", str(data), "--set", "train.max_steps=3"])
    assert p.returncode == 0, p.stderr[-3000:]
    train_dirs = sorted((tmp_path / "runs").glob("train-cli-*/train/*"))
    assert [d.name.split("-")[0] for d in train_dirs] == ["steper", "vanilla"]
    for d in train_dirs:
        summary = json.loads((d / "train_summary.json").read_text())
        assert summary["steps"] == 3 and summary["demo"] is True
        assert "PIPELINE DEMO, NOT A RESULT" in (d / "README.md").read_text()
        assert (d / "model.safetensors").exists() and (d / "tokenizer.json").exists()
    steper = json.loads((train_dirs[0] / "train_summary.json").read_text())
    assert steper["n_examples"] == {"first": 8, "mid": 8, "final": 8}
    assert set(json.loads((train_dirs[0] / "weights.json").read_text())) >= {"first", "mid", "final"}
    assert (next((tmp_path / "runs").glob("train-cli-*")) / "tiny-student" / "config.json").exists()

    again = run_cli([str(recipe), "--data", str(data), "--set", "train.max_steps=3", "--method", "steper"])
    assert again.returncode == 0 and "skipped" in again.stderr
    took = re.search(r"skipped\s+in\s+(\d+\.\d)\s+s", again.stderr)  # the skip's own time, not the training's
    assert took and float(took.group(1)) < 5.0, again.stderr

    bad = run_cli([str(recipe), "--data", str(data), "--method", "steper", "--set", "train.packing=true"])
    assert bad.returncode == 2 and "packing" in bad.stderr


@pytest.mark.slow
def test_cli_trains_from_hub_dataset_and_pushes(tmp_path):
    readme = "---\nconfigs:\n" + "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*.parquet\n" for c in CONFIGS
    ) + "---\n# step-wise data\n"
    recipe = write_recipe(tmp_path, methods=["steper"], push_to_hub=True, hub_model_id="tester/steper-tiny")
    with hub_emulator() as (url, state):
        state.seed_repo("tester/stepwise", {"README.md": readme.encode(), **parquet_files(stepwise_rows(6))})
        head = state.head("tester/stepwise")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(client_env(url, token=MARKER, home=str(tmp_path / "hf")))
        p = run_cli([str(recipe), "--data", "tester/stepwise", "--set", "train.max_steps=2"], env=env)
        assert p.returncode == 0, p.stderr[-3000:]
        files = state.repo("tester/steper-tiny", "model").files("main")
        assert {"config.json", "model.safetensors", "weights.json", "train_summary.json", "README.md"} <= set(files)
        assert not any(f.startswith("checkpoints/") for f in files)
        summary = json.loads(files["train_summary.json"])
        assert summary["dataset"] == "tester/stepwise" and summary["dataset_revision"] == head
        assert summary["dataset_path"] is None
        card = files["README.md"].decode()
        assert "datasets:\n- tester/stepwise\n" in card.split("---")[1] and f"`tester/stepwise` @ `{head}`" in card
        assert summary["n_examples"] == {"first": 6, "mid": 6, "final": 6}
        assert MARKER.encode() not in state.all_bytes()
        assert MARKER not in p.stdout + p.stderr
        assert any(state.authorized)  # the token from the environment was used


@pytest.mark.slow
def test_cli_under_ddp_two_cpu_processes(tmp_path):
    """DDP (gloo, 2 CPU processes): window token counts and the sigma gradients are reduced across ranks."""
    data = tmp_path / "dataset"
    for name, blob in parquet_files(stepwise_rows()).items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(blob)
    recipe = write_recipe(tmp_path, methods=["steper"])
    # torchrun: `accelerate launch --cpu` with several processes needs MPI; on GPUs use accelerate launch
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "steper_bench", "train", str(recipe), "--data", str(data), "--set", "train.max_steps=3"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = next((tmp_path / "runs").glob("train-cli-*/train/steper-*"))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == 3
    weights = json.loads((out / "weights.json").read_text())
    assert all(weights[k] != 1.0 for k in ("first", "mid", "final"))  # the sigmas were stepped

"""`steper-bench publish` against the local Hub emulator: a real push with huggingface_hub and
datasets in a subprocess (HF_ENDPOINT set before they import), then `load_dataset(repo, config)`."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.hub_emulator import client_env, hub_emulator

from steper_bench.build import build
from steper_bench.cards import BEGIN, END, split_front_matter
from steper_bench.recipe import load_recipe
from steper_bench.stepwise import CONFIGS

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
MARKER = "hf_MARKERtoken0123456789SECRET"
REPO_ID = "tester/steper-quickstart"

LOAD_ALL = """
import json, sys, datasets
datasets.config.USE_PARQUET_EXPORT = False
from datasets import load_dataset
out = {}
for config in json.loads(sys.argv[2]):
    dd = load_dataset(sys.argv[1], config)
    out[config] = {split: ds.to_list() for split, ds in dd.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    sets = [f"runs_dir={runs}", "source.train_limit=12", "source.test_limit=4", "dataset.splits=[train, test]",
            f"dataset.hub_repo={REPO_ID}"]
    summary = build(load_recipe(QUICKSTART, sets), progress=False, log=lambda m: None)
    return sets, summary


def _env(url: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, **client_env(url, token=MARKER, home=str(home))}


def _publish(sets, env, **kw):
    cmd = [sys.executable, "-m", "steper_bench", "publish", str(QUICKSTART), *[x for s in sets for x in ("--set", s)]]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, **kw)


def _local(data_dir: Path) -> dict:
    return {c: {p.name.split("-")[0]: pq.read_table(p).to_pylist() for p in sorted((data_dir / c).glob("*.parquet"))}
            for c in CONFIGS}


def _hub_files(state) -> dict[str, bytes]:
    return state.repo(REPO_ID).files("main")


def test_publish_load_rerun_card_tag_and_no_token_leak(built, tmp_path):
    sets, summary = built
    data_dir = Path(summary.paths["dataset"])
    user_readme = ("---\nlicense: other\nconfigs:\n- config_name: extra\n  data_files: extra/*.parquet\n---\n\n"
                   "# My notes\n\nHand-written section that must survive.\n").encode()
    extra = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), extra)
    with hub_emulator() as (url, state):
        state.seed_repo(REPO_ID, {"README.md": user_readme, "extra/a.parquet": extra.getvalue()})
        env = _env(url, tmp_path / "hf")
        p = _publish(sets, env)
        assert p.returncode == 0, p.stderr[-3000:]
        assert p.stdout.strip().endswith(REPO_ID)
        head = state.head(REPO_ID)
        files = _hub_files(state)

        # Every config loads from the "Hub" and equals the local build.
        q = subprocess.run([sys.executable, "-c", LOAD_ALL, REPO_ID, json.dumps(list(CONFIGS))],
                           capture_output=True, text=True, env=env, timeout=120)
        assert q.returncode == 0, q.stderr[-3000:]
        assert json.loads(q.stdout) == _local(data_dir)

        # Card: merged, not overwritten.
        meta, body = split_front_matter(files["README.md"].decode())
        assert "Hand-written section that must survive." in body and BEGIN in body and END in body
        assert meta["license"] == "cc-by-sa-4.0"
        assert {c["config_name"] for c in meta["configs"]} == set(CONFIGS) | {"extra"}
        assert "dataset_info" in meta  # written by push_to_hub, kept by the merge
        assert REPO_ID in body  # the usage snippet names the repo
        assert files["recipe.yaml"] == (data_dir / "recipe.yaml").read_bytes()
        assert "first/train-00000-of-00001.parquet" in files and "extra/a.parquet" in files

        tag = f"recipe-{summary.build_hash}"
        assert state.repo(REPO_ID).tags[tag] == head
        assert state.repo(REPO_ID).private  # it existed; and new repos default to private too

        # Re-running converges: the same files (push_to_hub may rewrite the README's metadata
        # and our card upload restore it: commits, but no change), the tag on the new head.
        again = _publish(sets, env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert _hub_files(state) == files
        assert state.repo(REPO_ID).tags[tag] == state.head(REPO_ID)

        # The token authenticated every request, and was never written or printed anywhere.
        # (LFS uploads go to a presigned storage URL, without the token, as on the real Hub.)
        assert all(auth for (_, path), auth in zip(state.requests, state.authorized) if path.startswith("/api/"))
        assert MARKER.encode() not in state.all_bytes()
        for out in (p.stdout, p.stderr, again.stdout, again.stderr):
            assert MARKER not in out
        for f in Path(summary.run_dir).rglob("*"):
            if f.is_file():
                assert MARKER.encode() not in f.read_bytes(), f


def test_new_repo_is_private_and_killed_push_converges(built, tmp_path):
    sets, summary = built
    sets = [*sets[:-1], "dataset.hub_repo=tester/fresh"]
    with hub_emulator() as (url, state):
        env = _env(url, tmp_path / "hf")
        state.delay_s["lfs_put"] = 0.5
        cmd = [sys.executable, "-m", "steper_bench", "publish", str(QUICKSTART), *[x for s in sets for x in ("--set", s)]]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(1 for m, path in list(state.requests) if m == "PUT") >= 3:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-push: some configs uploaded, others not
        proc.wait(timeout=10)
        assert state.repo("tester/fresh").private
        partial = state.repo("tester/fresh").files("main")
        assert "README.md" not in partial or "recipe.yaml" not in partial
        state.delay_s.clear()
        p = _publish(sets, env)
        assert p.returncode == 0, p.stderr[-3000:]
        files = state.repo("tester/fresh").files("main")
        for config in CONFIGS:
            for split in ("train", "test"):
                local = (Path(summary.paths["dataset"]) / config / f"{split}-00000-of-00001.parquet")
                hub = pq.read_table(io.BytesIO(files[f"{config}/{split}-00000-of-00001.parquet"]))
                assert hub.to_pylist() == pq.read_table(local).to_pylist()
        assert f"recipe-{summary.build_hash}" in state.repo("tester/fresh").tags
        # The converged repo holds exactly what an uninterrupted push writes.
        p = _publish([*sets[:-1], "dataset.hub_repo=tester/clean"], env)
        assert p.returncode == 0, p.stderr[-3000:]
        clean = state.repo("tester/clean").files("main")
        assert sorted(files) == sorted(clean)
        for name, data in clean.items():
            assert files[name] == data.replace(b"tester/clean", b"tester/fresh"), name


def test_publish_without_token_or_build_says_what_to_do(built, tmp_path):
    sets, _ = built
    with hub_emulator() as (url, state):
        env = _env(url, tmp_path / "hf")
        env.pop("HF_TOKEN")
        p = _publish(sets, env)
        assert p.returncode == 2 and "HF_TOKEN" in p.stderr and "Traceback" not in p.stderr
        env["HF_TOKEN"] = MARKER
        p = _publish([f"runs_dir={tmp_path}/none", f"dataset.hub_repo={REPO_ID}"], env)
        assert p.returncode == 2 and "run `steper-bench build` first" in p.stderr
        assert not state.repos


def test_merge_card_replaces_only_our_section():
    from steper_bench.cards import join_front_matter, merge_card

    ours = join_front_matter({"license": "mit", "configs": [{"config_name": "first", "data_files": "first/*"}]},
                             f"{BEGIN}\nnew text\n{END}\n")
    theirs = join_front_matter({"license": "other", "tags": ["mine"],
                                "configs": [{"config_name": "first", "data_files": "old/*"},
                                            {"config_name": "x", "data_files": "x/*"}]},
                               f"# Intro\n\nby hand\n\n{BEGIN}\nold text\n{END}\n\n## Outro\n")
    meta, body = split_front_matter(merge_card(theirs, ours))
    assert meta["license"] == "mit" and meta["tags"] == ["mine"]
    assert meta["configs"] == [{"config_name": "first", "data_files": "first/*"}, {"config_name": "x", "data_files": "x/*"}]
    assert body.index("by hand") < body.index("new text") < body.index("## Outro") and "old text" not in body
    assert merge_card(None, ours) == ours
    # A hand-written body without markers is kept, ours appended.
    _, body = split_front_matter(merge_card("# Mine\n", ours))
    assert body.lstrip().startswith("# Mine") and "new text" in body


def test_build_push_builds_then_publishes(tmp_path):
    """`build --push` is build, then the same publish: the Hub repo ends with every config."""
    sets = [f"runs_dir={tmp_path / 'runs'}", "source.train_limit=6", "source.test_limit=2",
            "dataset.hub_repo=tester/pushed"]
    with hub_emulator() as (url, state):
        cmd = [sys.executable, "-m", "steper_bench", "build", str(QUICKSTART), "--quiet", "--push",
               *[x for s in sets for x in ("--set", s)]]
        p = subprocess.run(cmd, capture_output=True, text=True, env=_env(url, tmp_path / "hf"), timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        files = state.repo("tester/pushed").files("main")
        r = load_recipe(QUICKSTART, sets)
        assert f"recipe-{r.stage_hash('build')}" in state.repo("tester/pushed").tags
    assert {"README.md", "recipe.yaml"} <= set(files)
    assert {name.split("/")[0] for name in files if name.endswith(".parquet")} == set(CONFIGS)

"""`steper-bench index`: a real process killed with SIGKILL mid-index, then re-run, finishes without
redoing finished chunks and leaves the very index a clean build makes; the paragraph store
resumes after a crash too."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from steper_bench.recipe import load_recipe
from steper_bench.retrieval import index_recipe, load_corpus
from steper_bench.retrieval import store as store_module

REPO = Path(__file__).resolve().parents[2]
N_PARAGRAPHS, CHUNK = 40_000, 2_000


def write_corpus(path: Path, n: int) -> None:
    words = re.findall(r"[A-Za-z]{3,}", (REPO / "data" / "hotpotqa" / "dev.jsonl").read_text(encoding="utf-8"))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(words), size=(n, 40))
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(picks):
            text = " ".join(words[j] for j in row)
            f.write(json.dumps({"id": f"p{i}", "title": f"{words[row[0]]} {i}", "text": text}) + "\n")


def write_recipe(folder: Path, corpus: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = {
        "name": "idx",
        "runs_dir": str(folder / "runs"),
        "source": {"dataset": "hotpotqa", "test_file": str(REPO / "data" / "hotpotqa" / "dev.jsonl")},
        "corpus": {"source": "file", "files": str(corpus), "index_chunk": CHUNK},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def cli(recipe: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "benchmark")}
    return subprocess.Popen(
        [sys.executable, "-m", "steper_bench", "index", str(recipe), "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "paragraphs.jsonl"
    write_corpus(path, N_PARAGRAPHS)
    return path


def test_sigkill_mid_index_then_rerun_resumes(corpus_file, tmp_path):
    clean = index_recipe(load_recipe(write_recipe(tmp_path / "clean", corpus_file)), progress=False)
    recipe = write_recipe(tmp_path / "killed", corpus_file)
    folder = tmp_path / "killed" / "runs" / "index" / clean["corpus_hash"]  # same content: same hash
    partial = folder / "bm25.partial"
    proc = cli(recipe)
    deadline = time.time() + 120
    while len(list(partial.glob("chunk-*.npz"))) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    done = len(list(partial.glob("chunk-*.npz")))
    chunks = N_PARAGRAPHS // CHUNK
    assert 4 <= done < chunks
    assert not (folder / "bm25").exists()  # no half index under the real name

    rerun = cli(recipe)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert f"paragraph store: 0 of {chunks} pieces written now" in err  # the store was complete
    assert f"chunks {chunks}, tokenised {chunks - done}" in err  # finished chunks were not redone
    assert not partial.exists()
    for name in ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json"):
        a = (Path(clean["folder"]) / "bm25" / name).read_bytes()
        assert (folder / "bm25" / name).read_bytes() == a, name


def test_paragraph_store_resumes_after_a_crash(corpus_file, tmp_path, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path / "crash", corpus_file))
    index_dir = tmp_path / "crash" / "runs" / "index"
    real_write, written = store_module._write_piece, []

    def crash_after_three(folder, piece, rows, end, chunk_size):
        if len(written) == 3:
            raise OSError("simulated crash")
        real_write(folder, piece, rows, end, chunk_size)
        written.append(piece)

    monkeypatch.setattr(store_module, "_write_piece", crash_after_three)
    with pytest.raises(OSError, match="simulated crash"):
        load_corpus(recipe, [], index_dir)
    monkeypatch.setattr(store_module, "_write_piece", real_write)
    corpus = load_corpus(recipe, [], index_dir)
    assert corpus.stats == {"pieces": N_PARAGRAPHS // CHUNK, "written": N_PARAGRAPHS // CHUNK - 3}
    assert len(corpus) == N_PARAGRAPHS
    lines = corpus_file.read_text(encoding="utf-8").splitlines()
    for row in (0, CHUNK - 1, CHUNK, 3 * CHUNK, N_PARAGRAPHS - 1):  # across the crash's boundary
        raw = json.loads(lines[row])
        p = corpus[row]
        assert (p.pid, p.title, p.text) == (raw["id"], raw["title"], raw["text"])


def test_paper_recipes_use_ircot_corpora_and_say_what_to_download(tmp_path):
    for name in ("hotpotqa", "2wikimultihopqa", "musique"):
        r = load_recipe(REPO / "recipes" / f"{name}.yaml")
        assert r.source.sampling == "ircot"
        if name == "hotpotqa":
            assert (r.corpus.source, r.corpus.format) == ("file", "hotpotqa-abstracts")
        else:
            assert (r.corpus.source, r.corpus.pool_splits) == ("pooled", ["train", "test"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "benchmark")}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "steper_bench",
            "index",
            str(REPO / "recipes" / "hotpotqa.yaml"),
            "--set",
            f"runs_dir={tmp_path}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    where = REPO / "corpora"
    assert (
        f"corpus.files: {where / 'enwiki-20171001-pages-meta-current-withlinks-abstracts'} does not exist" in p.stderr
    )
    assert (
        "https://nlp.stanford.edu/projects/hotpotqa/enwiki-20171001-pages-meta-current-withlinks-abstracts.tar.bz2"
        in p.stderr
    )
    assert f"tar -xjf enwiki-20171001-pages-meta-current-withlinks-abstracts.tar.bz2 -C {where}" in p.stderr

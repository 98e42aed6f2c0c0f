"""Benchmark: BM25 over a Wikipedia-scale corpus (IRCoT's HotpotQA corpus has 5.2M abstracts).

    pytest -m perf tests/perf/test_bm25_scale_perf.py -s        # STEPER_SCALE_DOCS=5200000 (default)

A synthetic JSONL corpus with Wikipedia-abstract shapes is generated once (cached under
STEPER_SCALE_DIR, default /tmp/steper-scale): lengths log-normal around 55 words (1-400), words
drawn with the shipped sample's word frequencies, 15% of them entity names drawn log-uniformly
from 2M made-up names (the long tail that makes Wikipedia's vocabulary millions of terms), titles
of 1-3 names. Then, each in its own process so that peak RSS is that stage's alone:
`steper-bench index` (store + chunked BM25; skipped when STEPER_SCALE_DIR/runs already holds the
index, so a re-run times the search alone), a load, and 1,000 queries at K=4 (12-word spans of
random paragraphs, like a reasoning sentence naming an entity) on the compiled search (numba;
the batch on the CPUs' threads): a first (cold page cache) pass of rows only, then a warm pass
reading the paragraphs from the store too, with its CPU time per query; 20 of them are
checked against bm25s's own scoring of the same folder. Goals: peak RSS <= 8 GiB while indexing, load <= 5 s,
>= 200 queries/s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.perf
N_DOCS = int(os.environ.get("STEPER_SCALE_DOCS", "5200000"))
CACHE = Path(os.environ.get("STEPER_SCALE_DIR", "/tmp/steper-scale"))
GiB = 1024**3


def generate(path: Path, n_docs: int, seed: int = 0) -> None:
    counts: Counter = Counter()
    for f in sorted((REPO / "data").glob("*/*.jsonl")):
        counts.update(w.lower() for w in re.findall(r"[A-Za-z]{2,}", f.read_text(encoding="utf-8")))
    words, freq = zip(*counts.most_common())
    words = np.array(words, dtype=object)
    p = np.array(freq, dtype=np.float64) / sum(freq)
    rng = np.random.default_rng(seed)
    syllables = np.array(
        [
            "".join(rng.choice(list("bcdfghjklmnprstvz"), 1))
            + "".join(rng.choice(list("aeiou"), 1))
            + "".join(rng.choice(list("lnrstkm"), 1))
            for _ in range(400)
        ],
        dtype=object,
    )
    names = np.unique(syllables[rng.integers(0, 400, (2_400_000, 3))].sum(axis=1))[:2_000_000]
    names = np.array([n.capitalize() for n in rng.permutation(names)], dtype=object)

    def name_ids(size):  # log-uniform ranks: a few names everywhere, most almost nowhere
        return np.minimum(np.exp(rng.random(size) * np.log(len(names))).astype(np.int64) - 1, len(names) - 1)

    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for start in range(0, n_docs, 100_000):
            n = min(100_000, n_docs - start)
            lengths = np.clip(rng.lognormal(np.log(45), 0.6, n).astype(np.int64), 1, 400)
            toks = words[rng.choice(len(words), int(lengths.sum()), p=p)]
            is_name = rng.random(len(toks)) < 0.15
            toks[is_name] = names[name_ids(int(is_name.sum()))]
            titles = names[name_ids(3 * n)].reshape(n, 3)
            title_len = rng.integers(1, 4, n)
            ends = np.cumsum(lengths)
            lines = []
            for i in range(n):
                text = " ".join(toks[ends[i] - lengths[i] : ends[i]]).capitalize() + "."
                lines.append(
                    json.dumps({"id": str(start + i), "title": " ".join(titles[i, : title_len[i]]), "text": text})
                )
            f.write("\n".join(lines) + "\n")
    tmp.rename(path)


def queries(path: Path, n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    wanted = set(rng.integers(0, N_DOCS, n * 2).tolist())
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i in wanted:
                toks = json.loads(line)["text"].split()
                s = int(rng.integers(0, max(1, len(toks) - 12)))
                out.append(" ".join(toks[s : s + 12]))
    return [q for q in out if len(q.split()) >= 6][:n]


def run_measured(code: str) -> tuple[str, float, float]:
    """A fresh Python process: its stdout, wall seconds and its own peak RSS (bytes)."""
    code += "\nimport resource; print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO / "benchmark")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return "\n".join(lines[:-1]), wall, int(lines[-1].split()[1]) * 1024


def test_bm25_at_wikipedia_scale(tmp_path):
    CACHE.mkdir(parents=True, exist_ok=True)
    corpus = CACHE / f"synthetic-{N_DOCS}.jsonl"
    if not corpus.exists():
        t = time.perf_counter()
        generate(corpus, N_DOCS)
        print(
            f"\ngenerated {N_DOCS:,} paragraphs ({corpus.stat().st_size / GiB:.2f} GiB) in {time.perf_counter() - t:.0f}s"
        )
    recipe = tmp_path / "scale.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "scale",
                "runs_dir": str(CACHE / "runs"),
                "source": {"dataset": "hotpotqa", "test_file": str(REPO / "data" / "hotpotqa" / "dev.jsonl")},
                "corpus": {"source": "file", "files": str(corpus)},
            }
        )
    )
    (tmp_path / "queries.json").write_text(json.dumps(queries(corpus, 1000)))
    built = not list((CACHE / "runs" / "index").glob("*/bm25/steper_meta.json"))

    _, t_index, rss_index = run_measured(
        "from steper_bench.recipe import load_recipe; from steper_bench.retrieval import index_recipe;"
        f"index_recipe(load_recipe({str(recipe)!r}), progress=False)"
    )
    search = f"""
import json, time
from steper_bench.recipe import load_recipe
from steper_bench.retrieval import file_spec
from steper_bench.retrieval.store import FileCorpus
from steper_bench.retrieval.bm25 import BM25Retriever, tokenize
from steper_bench.runs import RunPaths
r = load_recipe({str(recipe)!r})
qs = json.load(open({str(tmp_path / "queries.json")!r}))
t = time.perf_counter()
corpus = FileCorpus(file_spec(r), RunPaths.for_recipe(r).indexes, r.corpus.index_chunk).prepare()
bm25 = BM25Retriever(corpus, RunPaths.for_recipe(r).indexes)
load = time.perf_counter() - t
t = time.perf_counter(); rows = bm25.retrieve_rows(qs, 4); qps_cold = len(qs) / (time.perf_counter() - t)
t, c = time.perf_counter(), time.process_time(); res = bm25.retrieve(qs, 4)
qps, cpu_ms = len(qs) / (time.perf_counter() - t), (time.process_time() - c) / len(qs) * 1000
import bm25s, numpy as np
ref = bm25s.BM25.load(str(bm25.index_path), mmap=True, load_vocab=False)
exact = True
for q, got in zip(tokenize(qs[:20], bm25._stemmer, False), rows):
    s = ref.get_scores_from_ids([bm25.vocab[t] for t in q if t in bm25.vocab])
    best = np.lexsort((np.arange(len(s)), -s))[:4]
    exact &= got == [int(i) for i in best if s[i] > 0]
print(json.dumps({{"load": load, "qps_cold": qps_cold, "qps": qps, "cpu_ms": cpu_ms, "threads": bm25.threads,
                  "fast": bm25.fast, "vocab": len(bm25.vocab), "nnz": int(bm25.indptr[-1]),
                  "full": sum(len(x) == 4 for x in res), "n": len(qs), "exact": exact}}))
"""
    out, _, rss_search = run_measured(search)
    m = json.loads(out.strip().splitlines()[-1])
    disk = sum(f.stat().st_size for f in (CACHE / "runs" / "index").rglob("*") if f.is_file()) / GiB
    built_line = (
        f"index (store + tokenise + merge): {t_index / 60:.1f} min, peak RSS {rss_index / GiB:.2f} GiB (goal <= 8)"
        if built
        else "index: reused from an earlier run"
    )
    print(
        f"\nBM25 over {N_DOCS:,} synthetic abstracts ({corpus.stat().st_size / GiB:.2f} GiB JSONL; vocabulary "
        f"{m['vocab']:,} terms, {m['nnz']:,} postings; index + paragraph store {disk:.2f} GiB on disk)\n"
        f"  {built_line}\n"
        f"  load (memory-mapped): {m['load']:.2f} s (goal <= 5), search process peak RSS {rss_search / GiB:.2f} GiB\n"
        f"  queries at K=4: {m['qps_cold']:,.0f} q/s cold (rows), {m['qps']:,.0f} q/s warm with paragraphs read "
        f"(goal >= 200); {'compiled' if m['fast'] else 'numpy'} search on {m['threads']} threads, "
        f"{m['cpu_ms']:.1f} ms CPU a query; equal to bm25s's scoring on 20: {m['exact']}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    assert m["full"] == m["n"] == 1000 and m["exact"]
    assert (not built or rss_index <= 8 * GiB) and m["load"] <= 5.0 and m["qps"] >= 200

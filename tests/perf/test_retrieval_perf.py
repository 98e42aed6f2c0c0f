"""Benchmark: bm25s (our BM25Retriever) vs rank-bm25 on the same synthetic corpus, side by side.

Run with `pytest -m perf tests/perf/test_retrieval_perf.py -s`. Paragraphs are words drawn (seeded)
with the word frequencies of the shipped sample data; queries are 12-word spans of random
paragraphs, like a reasoning sentence that mentions an entity.
"""

from __future__ import annotations

import collections
import re
import time
from pathlib import Path

import numpy as np
import pytest

from steper_bench.records import Paragraph
from steper_bench.retrieval.bm25 import BM25Retriever, _stemmer, doc_text, tokenize
from steper_bench.retrieval.corpus import Corpus

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.perf


def _vocab() -> tuple[list[str], np.ndarray]:
    counts: collections.Counter = collections.Counter()
    for f in sorted((REPO / "data").glob("*/*.jsonl")):
        counts.update(w.lower() for w in re.findall(r"[A-Za-z]{2,}", f.read_text(encoding="utf-8")))
    words, freq = zip(*counts.most_common())
    p = np.array(freq, dtype=np.float64)
    return list(words), p / p.sum()


def synthetic(n_docs: int, n_queries: int, seed: int = 0) -> tuple[Corpus, list[str]]:
    rng = np.random.default_rng(seed)
    words, p = _vocab()
    lengths = rng.integers(30, 90, size=n_docs)
    flat = rng.choice(len(words), size=int(lengths.sum()) + 4 * n_docs, p=p)
    paras, pos = [], 0
    for i, n in enumerate(lengths):
        title = " ".join(words[j] for j in flat[pos : pos + 2]).title()
        text = " ".join(words[j] for j in flat[pos + 2 : pos + 2 + n])
        paras.append(Paragraph(f"p{i}", title, text))
        pos += n + 4
    queries = []
    for d in rng.integers(0, n_docs, size=n_queries):
        toks = paras[d].text.split()
        start = int(rng.integers(0, max(1, len(toks) - 12)))
        queries.append(" ".join(toks[start : start + 12]))
    return Corpus("pooled", paras), queries


def test_bm25s_vs_rank_bm25_20k():
    from rank_bm25 import BM25Okapi

    corpus, queries = synthetic(20_000, 1_000)
    t = time.perf_counter()
    ours = BM25Retriever(corpus)
    t_index = time.perf_counter() - t
    ours.retrieve(queries[:10], 4)  # warm-up
    t = time.perf_counter()
    results = ours.retrieve(queries, 4)
    qps_ours = len(queries) / (time.perf_counter() - t)

    # rank-bm25 gets the very same tokens (stopwords removed, stemmed); tokenising is not timed
    # for it, while our timing includes query tokenisation.
    stem = _stemmer()
    rb = BM25Okapi(tokenize([doc_text(p) for p in corpus.paragraphs], stem, False))
    subset = queries[:100]  # rank-bm25 scores every document in Python: time a subset, scale
    q_tokens = tokenize(subset, stem, False)
    t = time.perf_counter()
    top1 = [int(np.argmax(rb.get_scores(q))) for q in q_tokens]
    qps_rank = len(subset) / (time.perf_counter() - t)

    agree = np.mean([bool(r) and r[0].pid == f"p{i}" for r, i in zip(results, top1)])
    ratio = qps_ours / qps_rank
    print(f"\n20k paragraphs, {len(queries)} queries (rank-bm25 timed on {len(subset)}, per-query rate):"
          f"\n  bm25s index {t_index:.2f}s, {qps_ours:,.0f} q/s | rank-bm25 {qps_rank:,.1f} q/s | "
          f"ratio {ratio:.0f}x (goal >= 50x) | top-1 agreement {agree:.2f}")
    assert agree > 0.8  # same ranking function, different BM25 variants (lucene vs okapi idf)
    assert ratio >= 50


def test_bm25s_200k_index_and_query_rate(tmp_path):
    corpus, queries = synthetic(200_000, 1_000, seed=1)
    t = time.perf_counter()
    r = BM25Retriever(corpus, tmp_path)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    loaded = BM25Retriever(corpus, tmp_path)
    t_load = time.perf_counter() - t
    assert loaded.loaded_from_disk
    loaded.retrieve(queries[:10], 4)
    t = time.perf_counter()
    res = loaded.retrieve(queries, 4)
    qps = len(queries) / (time.perf_counter() - t)
    size = sum(f.stat().st_size for f in r.index_path.rglob("*")) / 1e6
    print(f"\n200k paragraphs: build+save {t_index:.1f}s, load {t_load:.2f}s, {size:.0f} MB, {qps:,.0f} q/s "
          "(bounds: build+save <= 90 s, load <= 1 s, <= 200 MB, >= 200 q/s)")
    assert all(len(x) == 4 for x in res)
    # Bounds far looser than the 2-core dev machine's figures (10.9 s, 0.06 s, 69 MB, 1,295 q/s; under
    # a load of 7 on 2 cores: 30 s, 0.22 s, 69 MB, 439 q/s): they catch an index rebuilt on load, a
    # dense matrix on disk, or per-query Python loops (about 1 q/s at 200k paragraphs).
    assert t_index <= 90 and t_load <= 1.0 and size <= 200 and qps >= 200

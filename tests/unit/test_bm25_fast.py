"""The compiled BM25 search (bm25_kernel, numba) against the numpy path: the same rows in the same
order, ties included, on the shipped sample and on random corpora built to tie often."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steper_bench.records import Paragraph
from steper_bench.retrieval import build_corpus
from steper_bench.retrieval.bm25 import MAX_WEIGHT, BM25Retriever, max_weights, tokenize
from steper_bench.retrieval.corpus import pooled_from
from steper_bench.sources.hotpotqa import parse

pytest.importorskip("numba", reason="the compiled search needs numba")
REPO = Path(__file__).resolve().parents[2]


def both(r: BM25Retriever, toks: list[str], k: int) -> tuple[list[int], list[int]]:
    r.fast, r.fast_min_postings = True, 0  # the compiled search for every query, however small
    fast = r.top_k(toks, k)
    r.fast = False
    slow = r.top_k(toks, k)
    r.fast = True
    return fast, slow


@pytest.fixture(scope="module")
def sample() -> BM25Retriever:
    files = [REPO / "data" / "hotpotqa" / "dev.jsonl", REPO / "data" / "hotpotqa" / "train.jsonl"]
    questions = [parse(json.loads(line), "test") for f in files for line in f.open() if line.strip()]
    return BM25Retriever(build_corpus(questions, "pooled"))


def test_fast_equals_numpy_on_the_shipped_sample(sample):
    paras = sample.corpus.paragraphs
    queries = [p.text[:120] for p in paras[::3]] + [f"{p.title} {p.title} {p.text[:40]}" for p in paras[::7]]
    queries += [" ".join(p.text for p in paras[:40])]  # a long query: most of the vocabulary's bounds
    mismatches, compared = [], 0
    for toks in tokenize(queries, sample._stemmer, False):
        for k in (1, 4, 10):
            fast, slow = both(sample, toks, k)
            compared += 1
            if fast != slow:
                mismatches.append((toks, k, fast, slow))
    assert compared > 1000 and not mismatches, mismatches[:3]


def _random_corpus(rng, n_docs: int, vocab: int, max_len: int) -> list[Paragraph]:
    """Few distinct words and short texts, some repeated whole: many rows score exactly alike."""
    words = [f"w{i}x" for i in range(vocab)]
    zipf = 1 / np.arange(1, vocab + 1)
    texts = [
        " ".join(rng.choice(words, int(rng.integers(1, max_len + 1)), p=zipf / zipf.sum())) for _ in range(n_docs)
    ]
    texts += [texts[int(i)] for i in rng.integers(0, n_docs, n_docs // 5)]  # exact duplicates: exact ties
    return [Paragraph(f"p{i}", "", t) for i, t in enumerate(texts)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_numpy_on_random_corpora_with_ties(seed):
    rng = np.random.default_rng(seed)
    paras = _random_corpus(rng, 6000, vocab=40 + 200 * seed, max_len=12)
    r = BM25Retriever(pooled_from(((p.pid, p.title, p.text) for p in paras), chunk_size=2500))
    words = sorted({w for p in paras for w in p.text.split()})
    ties = 0
    for _ in range(300):
        toks = tokenize([" ".join(rng.choice(words, int(rng.integers(1, 14))))], r._stemmer, False)[0]
        k = int(rng.integers(1, 30))
        fast, slow = both(r, toks, k)
        assert fast == slow, (toks, k)
        ids = [r.vocab[t] for t in toks if t in r.vocab]
        scores = np.zeros(len(r.corpus), np.float32)
        for t in ids:
            np.add.at(scores, r.indices[r.indptr[t] : r.indptr[t + 1]], r.data[r.indptr[t] : r.indptr[t + 1]])
        ties += len(slow) == k and np.sum(scores == scores[slow[-1]]) > 1
    assert ties > 50  # the k-th best was tied with another row in many of these searches


def test_batches_on_threads_equal_one_by_one(sample):
    queries = [p.text[:100] for p in sample.corpus.paragraphs[:200]]
    sample.threads, sample.fast_min_postings, sample.thread_min_rows = 2, 0, 0
    threaded = sample.retrieve_rows(queries, 4)
    sample.fast = False
    try:
        assert threaded == sample.retrieve_rows(queries, 4)
    finally:
        sample.fast = True


def test_term_maxima_written_at_build_and_derived_for_an_older_folder(tmp_path):
    paras = _random_corpus(np.random.default_rng(5), 500, vocab=60, max_len=8)
    corpus = pooled_from((p.pid, p.title, p.text) for p in paras)
    built = BM25Retriever(corpus, tmp_path)
    saved = np.load(built.index_path / MAX_WEIGHT)
    for t in range(len(built.vocab)):
        assert saved[t] == built.data[built.indptr[t] : built.indptr[t + 1]].max()
    (built.index_path / MAX_WEIGHT).unlink()  # an index from before the file
    again = BM25Retriever(pooled_from((p.pid, p.title, p.text) for p in paras), tmp_path)
    np.testing.assert_array_equal(again.max_weight, saved)
    assert (built.index_path / MAX_WEIGHT).exists()
    assert max_weights(np.array([2.0, 1.0, 3.0], np.float32), np.array([0, 2, 2, 3])).tolist() == [2.0, 0.0, 3.0]

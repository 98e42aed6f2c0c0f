"""`corpus.source: index`: a folder bm25s saved (built here, in the test, by bm25s itself) searched
as it is; its content, not its path, in the hashes; clear errors. An Elasticsearch index by name
needs a server (skipped without one)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.servers import elasticsearch_url

from steper_bench.cache import RequestCache
from steper_bench.recipe import RecipeError, validate_recipe
from steper_bench.records import Paragraph
from steper_bench.retrieval import CachedRetriever, Corpus, build_corpus, load_corpus, make_retriever
from steper_bench.retrieval.bm25 import BM25Retriever, _stemmer, doc_text, tokenize
from steper_bench.retrieval.paragraph_files import CorpusError
from steper_bench.sources.hotpotqa import parse

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def paragraphs() -> list[Paragraph]:
    f = REPO / "data" / "hotpotqa" / "dev.jsonl"
    questions = [parse(json.loads(line), "test") for line in f.open() if line.strip()]
    return build_corpus(questions, "pooled").paragraphs


def save_bm25s(folder: Path, paragraphs: list[Paragraph], stemmer=True, strings: bool = False):
    """What a bm25s user has: `bm25s.BM25().index(...)` then `save(folder, corpus=...)`."""
    import bm25s

    texts = [doc_text(p) for p in paragraphs]
    stem = _stemmer() if stemmer else None
    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False), show_progress=False)
    corpus = texts if strings else [{"id": p.pid, "title": p.title, "text": p.text} for p in paragraphs]
    model.save(str(folder), corpus=corpus, show_progress=False)
    return model


def recipe(tmp_path: Path, **corpus):
    return validate_recipe(
        {"source": {"test_file": str(REPO / "data" / "hotpotqa" / "dev.jsonl")}, "runs_dir": str(tmp_path / "runs"),
         "corpus": {"source": "index", **corpus}}
    )


def test_saved_bm25s_folder_is_searched_as_bm25s_scores_it(paragraphs, tmp_path):
    folder = tmp_path / "saved"
    model = save_bm25s(folder, paragraphs)
    before = sorted(p.name for p in folder.iterdir())
    r = recipe(tmp_path, index_path=str(folder))
    retriever = make_retriever(r, [], tmp_path / "runs" / "index")
    assert len(retriever.corpus) == len(paragraphs)
    queries = [p.text[:90] for p in paragraphs[::5]]
    found = retriever.retrieve(queries, 4)
    stem = _stemmer()
    for q, got in zip(tokenize(queries, stem, False), found):
        scores = model.get_scores_from_ids(model.get_tokens_ids(q))
        best = [int(i) for i in np.lexsort((np.arange(len(scores)), -scores))[:4] if scores[i] > 0]
        assert got == [paragraphs[i] for i in best]  # the same rows, read back with pid, title and text
    # The same paragraphs indexed by steper-bench give the same results; the user's folder is left as it was.
    ours = BM25Retriever(Corpus("pooled", list(paragraphs)))
    assert ours.retrieve(queries, 4) == found
    assert sorted(p.name for p in folder.iterdir()) == before


def test_hash_is_the_folder_content_not_its_path(paragraphs, tmp_path):
    save_bm25s(tmp_path / "a", paragraphs[:300])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ra, rb = recipe(tmp_path, index_path=str(tmp_path / "a")), recipe(tmp_path, index_path=str(tmp_path / "b"))
    for stage in ("build", "eval"):
        assert ra.stage_hash(stage) == rb.stage_hash(stage)
    pooled = validate_recipe({"source": {"test_file": str(REPO / "data" / "hotpotqa" / "dev.jsonl")}})
    assert ra.stage_hash("eval") != pooled.stage_hash("eval")
    corpus_file = tmp_path / "b" / "corpus.jsonl"
    corpus_file.write_text(corpus_file.read_text().replace(paragraphs[0].text, paragraphs[0].text + " Edited."))
    assert ra.stage_hash("build") != rb.stage_hash("build") and ra.stage_hash("eval") != rb.stage_hash("eval")
    unstemmed = recipe(tmp_path, index_path=str(tmp_path / "a"), index_stemmer="none")
    assert unstemmed.stage_hash("eval") != ra.stage_hash("eval")  # the query tokeniser changes results
    assert load_corpus(ra, [], None).content_hash() != load_corpus(rb, [], None).content_hash()


def test_unstemmed_string_corpus(paragraphs, tmp_path):
    save_bm25s(tmp_path / "s", paragraphs[:200], stemmer=False, strings=True)
    r = recipe(tmp_path, index_path=str(tmp_path / "s"), index_stemmer="none")
    retriever = make_retriever(r, [], None)
    p = paragraphs[17]
    top = retriever.retrieve([p.text], 1)[0][0]
    # bm25s saved each string as {"id": row, "text": ...}: no title, the row as id.
    assert (top.pid, top.title, top.text) == ("17", "", doc_text(p))


def test_errors_name_the_field_and_the_fix(paragraphs, tmp_path):
    with pytest.raises(RecipeError, match=r"needs corpus.index_path .*bm25s.BM25.save"):
        recipe(tmp_path)
    with pytest.raises(RecipeError, match=r"corpus.index_path is read with corpus.source: index"):
        validate_recipe({"source": {"test_file": "x.jsonl"}, "corpus": {"index_path": "somewhere"}})
    with pytest.raises(RecipeError, match=r"not corpus.backend: dense"):
        recipe(tmp_path, backend="dense", index_path="x")
    with pytest.raises(RecipeError, match=r"remove corpus.index_path"):
        recipe(tmp_path, backend="elasticsearch", index_path="x")
    with pytest.raises(CorpusError, match=r"corpus.index_path: .*missing is not a folder"):
        recipe(tmp_path, index_path=str(tmp_path / "missing")).stage_hash("eval")
    save_bm25s(tmp_path / "bare", paragraphs[:50])
    (tmp_path / "bare" / "corpus.jsonl").unlink()
    with pytest.raises(CorpusError, match=r"has no corpus.jsonl: save the index with its corpus"):
        recipe(tmp_path, index_path=str(tmp_path / "bare")).stage_hash("eval")
    save_bm25s(tmp_path / "short", paragraphs[:50])
    lines = (tmp_path / "short" / "corpus.jsonl").read_text().splitlines()
    (tmp_path / "short" / "corpus.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(CorpusError, match=r"49 lines for 50 indexed documents"):
        load_corpus(recipe(tmp_path, index_path=str(tmp_path / "short")), [], None)
    save_bm25s(tmp_path / "fields", paragraphs[:50])
    bad = recipe(tmp_path, index_path=str(tmp_path / "fields"), fields={"text": "paragraph_text"})
    with pytest.raises(CorpusError, match=r"no field 'paragraph_text' .*set corpus.fields.text"):
        load_corpus(bad, [], None)[0]


class _RowlessCorpus:
    """A backend's corpus without row access (as an Elasticsearch index by name)."""

    readable_rows = False
    mode = "pooled"

    def content_hash(self) -> str:
        return "rowless"

    def __len__(self) -> int:
        return 2


class _RowlessBackend:
    backend = "rowless"

    def __init__(self):
        self.corpus, self.calls = _RowlessCorpus(), 0

    def retrieve(self, queries, k, question_ids=None):
        self.calls += 1
        return [[Paragraph("p1", "T", f"about {q}")] for q in queries]


def test_cache_keeps_the_paragraphs_of_a_backend_without_rows(tmp_path):
    backend = _RowlessBackend()
    cached = CachedRetriever(backend, RequestCache(tmp_path / "cache.sqlite"))
    first = cached.retrieve(["a", "b"], 4)
    again = CachedRetriever(_RowlessBackend(), RequestCache(tmp_path / "cache.sqlite")).retrieve(["a", "b"], 4)
    assert first == again == [[Paragraph("p1", "T", "about a")], [Paragraph("p1", "T", "about b")]]


@pytest.mark.elasticsearch
@pytest.mark.skipif(elasticsearch_url() is None, reason="set STEPER_ES_URL to a reachable Elasticsearch server to run")
def test_elasticsearch_index_by_name_as_ircot_builds_it(paragraphs, tmp_path):
    es_mod = pytest.importorskip("elasticsearch", reason="pip install 'steper-bench[elasticsearch]'")
    from elasticsearch.helpers import bulk

    es = es_mod.Elasticsearch(os.environ["STEPER_ES_URL"])
    name = "steper-test-ircot-layout"
    es.options(ignore_status=404).indices.delete(index=name)
    docs = [{"_index": name, "_id": p.pid, "_source": {"id": p.pid, "title": p.title, "paragraph_text": p.text}}
            for p in paragraphs[:100]]
    bulk(es, docs, refresh="wait_for")
    r = recipe(tmp_path, backend="elasticsearch", fields={"text": "paragraph_text"},
               elasticsearch={"url": os.environ["STEPER_ES_URL"], "index": name})
    retriever = make_retriever(r, [], None)
    p = paragraphs[3]
    assert retriever.retrieve([f"{p.title} {p.text}"], 4)[0][0] == p and len(retriever.corpus) == 100

"""Corpus sources: paragraph files in every format (the HotpotQA abstracts dump layout included),
pooling whole splits and files, errors that name the file / field / fix, hashes, and the chunked
BM25 index against bm25s's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from steper_bench.evaluation.trace import paragraph_key
from steper_bench.recipe import validate_recipe
from steper_bench.retrieval import load_corpus, make_retriever
from steper_bench.retrieval.bm25 import BM25Retriever, _stemmer, doc_text, tokenize
from steper_bench.retrieval.corpus import build_corpus
from steper_bench.retrieval.paragraph_files import CorpusError
from steper_bench.sources import SourceError, load_questions
from support.corpora import HOTPOT_FILES, write_abstracts_dump

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"


def recipe(dataset="hotpotqa", corpus=None, **source):
    src = {
        "dataset": dataset,
        "train_file": str(DATA / dataset / "train.jsonl"),
        "test_file": str(DATA / dataset / "dev.jsonl"),
        **source,
    }
    return validate_recipe({"source": src, "corpus": corpus or {}})


@pytest.fixture(scope="module")
def hotpot():
    r = recipe(test_limit=None)
    return load_questions(r, "train").questions + load_questions(r, "test").questions


def test_abstracts_dump_is_the_corpus_and_retrieves_gold_paragraphs(hotpot, tmp_path):
    dump = tmp_path / "enwiki-abstracts"
    records = write_abstracts_dump(dump, HOTPOT_FILES)
    r = recipe(corpus={"source": "file", "files": str(dump), "format": "hotpotqa-abstracts", "index_chunk": 500})
    corpus = load_corpus(r, [], tmp_path / "index")
    assert len(corpus) == len(records) and corpus.n_chunks == -(-len(records) // 500)
    # IRCoT's join: every sentence stripped, one space between.
    first = records[0]
    assert corpus[0].pid == first["id"] and corpus[0].text == " ".join(s.strip() for s in first["text"])
    # Where a sentence lacks its leading space the two joins differ; the title-and-text key agrees.
    dump_by_title = {corpus[i].title: corpus[i] for i in range(len(corpus))}
    differ = [
        (p, dump_by_title[p.title]) for q in hotpot for p in q.paragraphs if dump_by_title[p.title].text != p.text
    ]
    assert differ and all(paragraph_key(a) == paragraph_key(b) for a, b in differ)
    retriever = make_retriever(r, hotpot[:3], tmp_path / "index")  # the questions do not change the corpus
    queries = [f"{t} {s}" for q in hotpot[:40] for t, s in q.supporting_sentences]
    titles = [t for q in hotpot[:40] for t, _ in q.supporting_sentences]
    results = retriever.retrieve(queries, 4)
    assert all(p.pid.isdigit() for res in results for p in res)  # only the dump's paragraphs
    top1 = np.mean([bool(res) and res[0].title == t for res, t in zip(results, titles)])
    assert top1 >= 0.95


@pytest.mark.parametrize("fmt", ["jsonl", "tsv", "parquet", "jsonl.gz"])
def test_each_file_format_with_configured_fields(fmt, hotpot, tmp_path):
    paras = [p for q in hotpot[:30] for p in q.paragraphs]
    rows = [{"doc": f"d{i}", "heading": p.title, "body": p.text} for i, p in enumerate(paras)]
    path = tmp_path / f"paras.{fmt}"
    if fmt.startswith("jsonl"):
        text = "".join(json.dumps(x) + "\n" for x in rows).encode()
        path.write_bytes(__import__("gzip").compress(text) if fmt.endswith(".gz") else text)
    elif fmt == "tsv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["doc", "body", "heading"])
            w.writerows([x["doc"], x["body"], x["heading"]] for x in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    r = recipe(
        corpus={
            "source": "file",
            "files": [str(path)],
            "fields": {"id": "doc", "title": "heading", "text": "body"},
            "index_chunk": 128,
        }
    )
    corpus = load_corpus(r, [], tmp_path / "index")
    assert [corpus[i].pid for i in range(len(corpus))] == [x["doc"] for x in rows]
    assert corpus[7].title == paras[7].title and corpus[7].text == paras[7].text
    res = make_retriever(r, [], tmp_path / "index").retrieve([f"{paras[5].title} {paras[5].text[:120]}"], 4)
    assert res[0][0].pid == "d5"


def test_missing_corpus_and_fields_are_clear_errors(tmp_path):
    dump = tmp_path / "wiki"
    r = recipe(corpus={"source": "file", "files": str(dump), "format": "hotpotqa-abstracts"})
    with pytest.raises(
        CorpusError,
        match=r"corpus.files: .*wiki does not exist: download the HotpotQA Wikipedia "
        r"abstracts IRCoT uses \(https://nlp.stanford.edu/projects/hotpotqa/enwiki-20171001",
    ):
        load_corpus(r, [], tmp_path / "index")
    dump.mkdir()
    with pytest.raises(CorpusError, match=r"holds no \*/wiki_\*.bz2 files"):
        load_corpus(r, [], tmp_path / "index")
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "title": "T", "text": "x"}\n{"id": "b", "name": "T2", "text": "y"}\n')
    r = recipe(corpus={"source": "file", "files": str(bad)})
    with pytest.raises(
        CorpusError,
        match=r"p.jsonl:2: no field 'title' \(fields: id, name, text\): "
        r"set corpus.fields.title",
    ):
        load_corpus(r, [], tmp_path / "index")
    assert isinstance(CorpusError("x"), SourceError)  # the CLI prints it as one line, exit 2
    for corpus, msg in [
        ({"source": "file"}, "needs corpus.files"),
        ({"files": "x.jsonl"}, "read with corpus.source: file"),
        ({"source": "file", "files": "x", "pool_splits": ["train"]}, "use them with corpus.source: pooled"),
        ({"mode": "per-question", "pool_splits": ["train"]}, "per-question is each question's own"),
    ]:
        with pytest.raises(Exception, match=msg):
            recipe(corpus=corpus)


def test_pool_splits_pool_every_record_whatever_the_limits(tmp_path):
    limited = recipe("2wikimultihopqa", train_limit=5, test_limit=3)
    loaded = load_questions(limited, "train").questions + load_questions(limited, "test").questions
    small = load_corpus(limited, loaded, None)
    pooled = recipe("2wikimultihopqa", corpus={"pool_splits": ["train", "test"]}, train_limit=5, test_limit=3)
    full = load_corpus(pooled, loaded, None)
    everything = recipe("2wikimultihopqa", test_limit=None)
    all_qs = load_questions(everything, "train").questions + load_questions(everything, "test").questions
    assert len(full) == len(build_corpus(all_qs)) > len(small)
    assert [p.pid for p in full.paragraphs] == [p.pid for p in build_corpus(all_qs).paragraphs]
    # pool_files: a test file without answers (2Wiki's test.json) still gives its paragraphs.
    extra = tmp_path / "test.json"
    raw = json.loads((DATA / "2wikimultihopqa" / "dev.jsonl").open().readline())
    raw = {"_id": "hidden-1", "question": raw["question"], "context": [["Only Here", ["A unique paragraph."]]]}
    extra.write_text(json.dumps([raw]))
    more = load_corpus(
        recipe("2wikimultihopqa", corpus={"pool_splits": ["train"], "pool_files": [str(extra)]}), [], None
    )
    assert more.paragraphs[-1].pid == "hidden-1-0" and more.paragraphs[-1].text == "A unique paragraph."
    assert pooled.stage_hash("build") != limited.stage_hash("build")


def test_corpus_source_and_file_content_enter_the_hashes(hotpot, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "title": "T", "text": "alpha"}\n')
    r = recipe(corpus={"source": "file", "files": str(path)})
    base = recipe()
    assert r.stage_hash("build") != base.stage_hash("build") and r.stage_hash("eval") != base.stage_hash("eval")
    h1 = load_corpus(r, [], tmp_path / "index").content_hash()
    assert load_corpus(r, [], tmp_path / "index").content_hash() == h1  # memoised, same
    path.write_text('{"id": "a", "title": "T", "text": "alpha beta"}\n')
    assert load_corpus(r, [], tmp_path / "index").content_hash() != h1


def test_chunked_index_equals_bm25s_own(hotpot):
    import bm25s

    corpus = build_corpus(hotpot, chunk_size=300)  # several chunks, merged
    ours = BM25Retriever(corpus)
    ref = bm25s.BM25()
    stem = _stemmer()
    ref.index(tokenize([doc_text(p) for p in corpus.paragraphs], stem, True), show_progress=False)
    for toks in tokenize([q.question for q in hotpot[:80]], stem, False):
        expected = ref.get_scores_from_ids(ref.get_tokens_ids(toks))
        got = np.zeros(len(corpus), np.float32)
        for t in (ours.vocab[t] for t in toks if t in ours.vocab):
            got[ours.indices[ours.indptr[t] : ours.indptr[t + 1]]] += ours.data[ours.indptr[t] : ours.indptr[t + 1]]
        np.testing.assert_array_equal(got, expected)
        best = np.lexsort((np.arange(len(corpus)), -expected))[:4]
        assert ours.top_k(toks, 4) == [int(i) for i in best if expected[i] > 0]


def test_chunks_of_another_chunk_size_are_not_reused(hotpot, tmp_path):
    from steper_bench.retrieval import bm25

    small = build_corpus(hotpot, chunk_size=200)
    partial = bm25.partial_folder(tmp_path / small.content_hash() / "bm25.partial", small)
    bm25._save_npz(partial / "chunk-00000.npz", bm25._tokenize_chunk(small.chunk(0), _stemmer()))  # then a kill
    big = build_corpus(hotpot, chunk_size=500)  # same paragraphs, same hash, other chunks
    assert big.content_hash() == small.content_hash()
    rebuilt = BM25Retriever(big, tmp_path)
    assert rebuilt.stats == {"chunks": big.n_chunks, "tokenised": big.n_chunks}
    fresh = BM25Retriever(build_corpus(hotpot, chunk_size=500))
    np.testing.assert_array_equal(rebuilt.data, fresh.data)
    np.testing.assert_array_equal(rebuilt.indices, fresh.indices)


def test_index_folder_loads_in_bm25s_too(hotpot, tmp_path):
    import bm25s

    ours = BM25Retriever(build_corpus(hotpot, chunk_size=400), tmp_path)
    theirs = bm25s.BM25.load(str(ours.index_path), mmap=True)
    stem = _stemmer()
    for toks in tokenize([q.question for q in hotpot[:20]], stem, False):
        scores = theirs.get_scores_from_ids(theirs.get_tokens_ids(toks))
        best = np.lexsort((np.arange(len(scores)), -scores))[:4]
        assert ours.top_k(toks, 4) == [int(i) for i in best if scores[i] > 0]

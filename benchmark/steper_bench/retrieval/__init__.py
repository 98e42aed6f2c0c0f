"""Retrieval: the recipe's corpus and the backend it names.

    retriever = make_retriever(recipe, questions, index_dir=paths.indexes, cache=cache)
    retriever.retrieve(["query", ...], k=4, question_ids=[...])  # -> list[list[Paragraph]]

The corpus (`load_corpus`) is `corpus.source`:
- pooled: the loaded questions' paragraphs, or with `corpus.pool_splits` / `corpus.pool_files`
  every record of those splits / files (independent of limits and samples);
- file: paragraph files on disk (`retrieval.store.FileCorpus`), streamed once into a store;
- index: an existing index, searched as it is (`retrieval.saved_index`): a bm25s folder with its
  corpus.jsonl, or an Elasticsearch index by name.

A backend is a module with a factory `make(recipe, corpus, index_dir, progress=False) -> Retriever`,
listed in `steper_bench.registry.RETRIEVERS`. `index_dir` is the folder that holds indexes
(`RunPaths.indexes`, shared by every run of a runs folder): a corpus's index lives in
`index_dir/<corpus hash>/<backend>`, built once, loaded on re-runs (`steper-bench index` builds it
ahead). With a `RequestCache`, results are cached too (key: backend, corpus hash, query, k,
question id), so one cache serves teacher, judge and retrieval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from steper_bench.records import Paragraph
from steper_bench.retrieval.base import Retriever
from steper_bench.retrieval.corpus import Corpus, build_corpus, pooled_from

if TYPE_CHECKING:
    from steper_bench.cache import RequestCache
    from steper_bench.recipe import Recipe
    from steper_bench.records import Question

__all__ = ["CachedRetriever", "Corpus", "Retriever", "build_corpus", "load_corpus", "make_retriever"]


def file_spec(recipe: Recipe):
    from steper_bench.retrieval.paragraph_files import FileSpec

    c = recipe.corpus
    paths = tuple(Path(os.path.abspath(recipe.resolve_path(f))) for f in c.files or [])  # "a/../b" -> "b"
    return FileSpec(paths, c.format, c.fields.id, c.fields.title, c.fields.text)


def load_corpus(recipe: Recipe, questions: list[Question], index_dir: Path | None, progress: bool = False):
    """The recipe's corpus. A file corpus needs `index_dir` (its paragraphs are stored there)."""
    c = recipe.corpus
    if c.source == "index":
        if c.backend == "elasticsearch":
            from steper_bench.retrieval.elasticsearch import NamedIndex

            return NamedIndex(recipe)
        from steper_bench.retrieval import saved_index

        return saved_index.load(recipe, index_dir)
    if c.source == "file":
        from steper_bench.retrieval.store import FileCorpus

        if index_dir is None:
            raise ValueError("corpus.source: file needs an index folder to store its paragraphs")
        return FileCorpus(file_spec(recipe), index_dir, c.index_chunk).prepare(progress)
    if c.pool_splits is not None or c.pool_files:
        from steper_bench.sources import pool_records

        files = [recipe.resolve_path(f) for f in c.pool_files]
        return pooled_from(pool_records(recipe, c.pool_splits or [], files), c.index_chunk)
    return build_corpus(questions, c.mode, c.index_chunk)


def make_retriever(
    recipe: Recipe,
    questions: list[Question],
    index_dir: Path | None,
    cache: RequestCache | None = None,
    progress: bool = False,
) -> Retriever:
    from steper_bench.registry import RETRIEVERS

    corpus = load_corpus(recipe, questions, index_dir, progress)
    inner = RETRIEVERS.get(recipe.corpus.backend)(recipe, corpus, index_dir, progress=progress)
    return CachedRetriever(inner, cache) if cache is not None else inner


class CachedRetriever:
    """Looks each query up in the request cache; misses go to the backend as one batch. A hit
    holds corpus rows (and their pids, checked), so it costs one read per paragraph."""

    def __init__(self, inner, cache: RequestCache):
        self.inner, self.cache = inner, cache
        self.corpus = inner.corpus
        self._row_of: dict[str, int] = {}
        self._keyer = None

    def _key(self, query: str, k: int, qid: str | None) -> str:
        if self._keyer is None:  # the fixed parts, checked and laid out once
            self._keyer = self.cache.keyer(kind="retrieval", backend=self.inner.backend, corpus=self.corpus.content_hash())
        return self._keyer(query=query, k=k, question_id=qid)

    def _hit(self, value: dict) -> list[Paragraph] | None:
        if not getattr(self.corpus, "readable_rows", True):  # an index by name: the paragraphs themselves
            found = value.get("paragraphs")
            return None if found is None else [Paragraph(*p) for p in found]
        rows = value.get("rows")
        if rows is None or len(rows) != len(value["pids"]) or not all(0 <= r < len(self.corpus) for r in rows):
            return None  # an entry from before rows were stored: ask the backend again
        out = [self.corpus[r] for r in rows]
        return out if [p.pid for p in out] == value["pids"] else None

    def _search(self, queries: list[str], k: int, qids: list[str] | None) -> list[tuple[list[int], list[Paragraph]]]:
        """(rows, paragraphs) per query: from the backend's `retrieve_rows` when it has one."""
        if hasattr(self.inner, "retrieve_rows"):
            return [(rows, [self.corpus[r] for r in rows]) for rows in self.inner.retrieve_rows(queries, k, qids)]
        found = self.inner.retrieve(queries, k, qids)
        if not getattr(self.corpus, "readable_rows", True):
            return [(None, res) for res in found]
        if not self._row_of:
            self._row_of = {self.corpus[i].pid: i for i in range(len(self.corpus))}
        return [([self._row_of[p.pid] for p in res], res) for res in found]

    @staticmethod
    def _value(rows: list[int] | None, found: list[Paragraph]) -> dict:
        if rows is None:
            return {"pids": [p.pid for p in found], "paragraphs": [[p.pid, p.title, p.text] for p in found]}
        return {"pids": [p.pid for p in found], "rows": rows}

    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        qids = question_ids if question_ids is not None else [None] * len(queries)
        keys = [self._key(q, k, qid) for q, qid in zip(queries, qids)]
        out = [self._hit(hit) if hit is not None else None for hit in self.cache.get_many(keys)]
        miss = [i for i, r in enumerate(out) if r is None]
        if miss:
            found = self._search(
                [queries[i] for i in miss], k, [qids[i] for i in miss] if question_ids is not None else None
            )
            for i, (_, res) in zip(miss, found):
                out[i] = res
            self.cache.put_many([(keys[i], self._value(rows, res)) for i, (rows, res) in zip(miss, found)])
        return out  # type: ignore[return-value]


def recipe_pool(recipe: Recipe) -> list[Question]:
    """The questions a default pooled corpus is made of: train, then test, as build and eval load them."""
    from steper_bench.sources import load_questions

    src = recipe.source
    splits = [s for s in ("train", "test") if (src.train_file if s == "train" else src.test_file) or src.hub_id]
    return [q for s in splits for q in load_questions(recipe, s).questions]


def index_recipe(recipe: Recipe, progress: bool = True) -> dict:
    """Build (or resume, or find) the recipe's index: what `steper-bench index` runs."""
    import time

    from steper_bench.runs import RunPaths

    t0 = time.perf_counter()
    c = recipe.corpus
    needs_questions = c.source == "pooled" and c.pool_splits is None and not c.pool_files
    pool = recipe_pool(recipe) if needs_questions else []
    index_dir = RunPaths.for_recipe(recipe).indexes
    retriever = make_retriever(recipe, pool, index_dir, progress=progress)
    corpus = retriever.corpus
    return {
        "backend": c.backend,
        "corpus_hash": corpus.content_hash(),
        "paragraphs": len(corpus),
        "folder": str(index_dir / corpus.content_hash()),
        "store": getattr(corpus, "stats", None),
        "index": getattr(retriever, "stats", None),
        "seconds": time.perf_counter() - t0,
    }

"""Retrieval: build the corpus from the loaded questions and pick the backend the recipe names.

    retriever = make_retriever(recipe, questions, index_dir=paths.indexes, cache=cache)
    retriever.retrieve(["query", ...], k=4, question_ids=[...])  # -> list[list[Paragraph]]

A backend is a module with a factory `make(recipe, corpus, index_dir) -> Retriever`, listed in
`steper_bench.registry.RETRIEVERS`. `index_dir` is the folder that holds indexes: a corpus's index lives in
`index_dir/<corpus hash>` (`RunPaths.indexes` is the usual index_dir), built once, loaded on re-runs.
With a `RequestCache`, results are cached too (key: backend, corpus hash, query, k, question id),
so one cache serves teacher, judge and retrieval.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from steper_bench.records import Paragraph
from steper_bench.retrieval.base import Retriever
from steper_bench.retrieval.corpus import Corpus, build_corpus

if TYPE_CHECKING:
    from steper_bench.cache import RequestCache
    from steper_bench.recipe import Recipe
    from steper_bench.records import Question

__all__ = ["Corpus", "Retriever", "build_corpus", "make_retriever", "CachedRetriever"]


def make_retriever(
    recipe: Recipe, questions: list[Question], index_dir: Path | None, cache: RequestCache | None = None
) -> Retriever:
    from steper_bench.registry import RETRIEVERS

    corpus = build_corpus(questions, recipe.corpus.mode)
    inner = RETRIEVERS.get(recipe.corpus.backend)(recipe, corpus, index_dir)
    return CachedRetriever(inner, cache) if cache is not None else inner


class CachedRetriever:
    """Looks each query up in the request cache; misses go to the backend as one batch."""

    def __init__(self, inner, cache: RequestCache):
        self.inner, self.cache = inner, cache
        self.corpus: Corpus = inner.corpus
        self._by_pid = {p.pid: p for p in self.corpus.paragraphs}

    def _key(self, query: str, k: int, qid: str | None) -> str:
        return self.cache.key(
            kind="retrieval", backend=self.inner.backend, corpus=self.corpus.content_hash(),
            query=query, k=k, question_id=qid,
        )

    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        qids = question_ids if question_ids is not None else [None] * len(queries)
        keys = [self._key(q, k, qid) for q, qid in zip(queries, qids)]
        out: list[list[Paragraph] | None] = []
        for key in keys:
            hit = self.cache.get(key)
            out.append([self._by_pid[pid] for pid in hit["pids"]] if hit is not None else None)
        miss = [i for i, r in enumerate(out) if r is None]
        if miss:
            found = self.inner.retrieve(
                [queries[i] for i in miss], k, [qids[i] for i in miss] if question_ids is not None else None
            )
            for i, res in zip(miss, found):
                out[i] = res
            self.cache.put_many([(keys[i], {"pids": [p.pid for p in res]}) for i, res in zip(miss, found)])
        return out  # type: ignore[return-value]

"""Elasticsearch backend for Wikipedia-scale corpora (as IRCoT): the real `elasticsearch` client.

Install with `pip install 'steper-bench[elasticsearch]'`. The index is named
`<corpus.elasticsearch.index>-<corpus hash>`, so two corpora never share one; it is created and
bulk-indexed once (reused when its document count matches), chunk by chunk from the corpus (a
file corpus is never held in memory). Queries go out as one multi-search per batch; BM25 is
Elasticsearch's default similarity. Per-question mode filters on the paragraph's question id.
"""

from __future__ import annotations

from steper_bench.recipe import ElasticsearchConfig, expand_env
from steper_bench.records import Paragraph
from steper_bench.retrieval.corpus import Corpus

BULK_CHUNK = 2000


def _client(cfg: ElasticsearchConfig):
    try:
        from elasticsearch import Elasticsearch
    except ImportError:
        raise RuntimeError(
            "corpus.backend: elasticsearch needs the Elasticsearch client: "
            "pip install 'steper-bench[elasticsearch]' (or use corpus.backend: bm25)"
        ) from None
    url = expand_env(cfg.url, what="corpus.elasticsearch.url")
    api_key = expand_env(cfg.api_key, what="corpus.elasticsearch.api_key")
    auth = {"api_key": api_key} if api_key else {}
    return Elasticsearch(url, request_timeout=60, **auth)


class ElasticsearchRetriever:
    backend = "elasticsearch"

    def __init__(self, corpus: Corpus, cfg: ElasticsearchConfig, client=None):
        self.corpus = corpus
        self.es = client if client is not None else _client(cfg)
        self.index = f"{cfg.index}-{corpus.content_hash()}".lower()
        self._qid_of = {pid: qid for qid, pids in corpus.question_pids.items() for pid in pids}
        self._ensure_index()

    def _ensure_index(self) -> None:
        es = self.es
        if es.indices.exists(index=self.index):
            es.indices.refresh(index=self.index)
            if es.count(index=self.index)["count"] == len(self.corpus):
                return
            es.indices.delete(index=self.index)  # a half-built index from a crash: start over
        es.indices.create(
            index=self.index,
            settings={
                "number_of_shards": 1,
                "number_of_replicas": 0,
                "analysis": {
                    "analyzer": {
                        "default": {
                            "type": "custom",
                            "tokenizer": "standard",
                            "filter": ["lowercase", "stop", "porter_stem"],
                        }
                    }
                },
            },
            mappings={
                "properties": {
                    "pid": {"type": "keyword"},
                    "qid": {"type": "keyword"},
                    "row": {"type": "long"},
                    "title": {"type": "text"},
                    "text": {"type": "text"},
                }
            },
        )
        from elasticsearch.helpers import bulk

        bulk(es, self._actions(), chunk_size=BULK_CHUNK, refresh="wait_for")

    def _actions(self):
        row = 0
        for i in range(self.corpus.n_chunks):
            for p in self.corpus.chunk(i):
                yield {
                    "_index": self.index,
                    "_id": p.pid,
                    "_source": {
                        "pid": p.pid,
                        "qid": self._qid_of.get(p.pid, ""),
                        "row": row,
                        "title": p.title,
                        "text": p.text,
                    },
                }
                row += 1

    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        return [[self.corpus[r] for r in rows] for rows in self.retrieve_rows(queries, k, question_ids)]

    def retrieve_rows(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[int]]:
        restrict = self.corpus.mode == "per-question" and question_ids is not None
        out: list[list[int]] = [[] for _ in queries]
        todo = [i for i, q in enumerate(queries) if q and q.strip()]  # empty query: no result
        if not todo:
            return out
        searches: list[dict] = []
        for i in todo:
            query: dict = {"multi_match": {"query": queries[i], "fields": ["title", "text"]}}
            if restrict:
                query = {"bool": {"must": query, "filter": {"term": {"qid": question_ids[i]}}}}
            searches += [{"index": self.index}, {"query": query, "size": k, "_source": ["row"]}]
        responses = self.es.msearch(searches=searches)["responses"]
        for i, resp in zip(todo, responses):
            if "error" in resp:
                raise RuntimeError(f"Elasticsearch query failed for {queries[i]!r}: {resp['error']}")
            out[i] = [h["_source"]["row"] for h in resp["hits"]["hits"]]
        return out


def make(recipe, corpus: Corpus, index_dir=None, progress: bool = False) -> ElasticsearchRetriever:
    return ElasticsearchRetriever(corpus, recipe.corpus.elasticsearch)

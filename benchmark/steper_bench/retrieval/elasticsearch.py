"""Elasticsearch backend for Wikipedia-scale corpora (as IRCoT): the real `elasticsearch` client.

Install with `pip install 'steper-bench[elasticsearch]'`. The index is named
`<corpus.elasticsearch.index>-<corpus hash>`, so two corpora never share one; it is created and
bulk-indexed once (reused when its document count matches), chunk by chunk from the corpus (a
file corpus is never held in memory). Queries go out as one multi-search per batch; BM25 is
Elasticsearch's default similarity. Per-question mode filters on the paragraph's question id.

With `corpus.source: index` an index that already exists is searched by its name as it is (for
example one built by IRCoT's retriever server, whose paragraphs have `title` and
`paragraph_text`: set corpus.fields.text: paragraph_text): nothing is created or re-indexed, the
hits' own fields are the paragraphs, and the hashes take the index's name, UUID and document
count from the server.
"""

from __future__ import annotations

import hashlib
import json

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


_identities: dict[tuple[str, str], tuple[str, int]] = {}


def index_identity(cfg: ElasticsearchConfig, client=None) -> str:
    """An existing index's identity: its name, UUID and document count, asked once per process."""
    key = (str(cfg.url), cfg.index)
    if key not in _identities:
        es = client if client is not None else _client(cfg)
        if not es.indices.exists(index=cfg.index):
            raise RuntimeError(f"corpus.elasticsearch.index: no index {cfg.index!r} at {cfg.url}: build it first (for "
                               "IRCoT's corpora, its retriever_server/build_index.py) or name an existing one")
        info = es.indices.get(index=cfg.index)
        uuid = next(iter(info.values()))["settings"]["index"]["uuid"]
        count = int(es.count(index=cfg.index)["count"])
        digest = hashlib.sha256(json.dumps([cfg.index, uuid, count]).encode()).hexdigest()[:16]
        _identities[key] = (digest, count)
    return _identities[key][0]


class NamedIndex:
    """The corpus of an existing Elasticsearch index: its size and identity; paragraphs come from
    the hits themselves, not by row."""

    mode = "pooled"
    readable_rows = False

    def __init__(self, recipe):
        self.cfg, self.fields = recipe.corpus.elasticsearch, recipe.corpus.fields
        self.question_pids: dict[str, list[str]] = {}
        self._hash = index_identity(self.cfg)
        self._count = _identities[(str(self.cfg.url), self.cfg.index)][1]

    def content_hash(self) -> str:
        return self._hash

    def __len__(self) -> int:
        return self._count


class NamedIndexRetriever:
    """Searches an existing index by name: a multi_match over the title and text fields."""

    backend = "elasticsearch"

    def __init__(self, corpus: NamedIndex, client=None):
        self.corpus, self.fields = corpus, corpus.fields
        self.es = client if client is not None else _client(corpus.cfg)
        self.index = corpus.cfg.index

    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        out: list[list[Paragraph]] = [[] for _ in queries]
        todo = [i for i, q in enumerate(queries) if q and q.strip()]
        if not todo:
            return out
        f = self.fields
        searches: list[dict] = []
        for i in todo:
            query = {"multi_match": {"query": queries[i], "fields": [f.title, f.text]}}
            searches += [{"index": self.index}, {"query": query, "size": k, "_source": [f.id, f.title, f.text]}]
        for i, resp in zip(todo, self.es.msearch(searches=searches)["responses"]):
            if "error" in resp:
                raise RuntimeError(f"Elasticsearch query failed for {queries[i]!r}: {resp['error']}")
            out[i] = [self._paragraph(h) for h in resp["hits"]["hits"]]
        return out

    def _paragraph(self, hit: dict) -> Paragraph:
        src, f = hit["_source"], self.fields
        text = src.get(f.text)
        if text is None:
            raise RuntimeError(f"Elasticsearch index {self.index!r}: a hit has no field {f.text!r} (fields: "
                               f"{', '.join(sorted(src))}): set corpus.fields.text to the field holding the text")
        if isinstance(text, list):
            text = " ".join(str(s).strip() for s in text)
        return Paragraph(str(src.get(f.id, hit["_id"])), str(src.get(f.title, "")).strip(), str(text).strip())


def make(recipe, corpus, index_dir=None, progress: bool = False):
    if isinstance(corpus, NamedIndex):
        return NamedIndexRetriever(corpus)
    return ElasticsearchRetriever(corpus, recipe.corpus.elasticsearch)

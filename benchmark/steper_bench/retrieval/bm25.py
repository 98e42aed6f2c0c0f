"""BM25 in process with bm25s: title + text indexed, English stopwords, Snowball stemmer.

One index over the whole corpus, built once and saved under `<index_dir>/<corpus hash>/`
(built in a temporary folder and renamed, so a crash never leaves half an index under the real
name; a concurrent builder that loses the rename race just uses the winner's).

Per-question mode scores a query against the whole index (global document frequencies, which
are far steadier than ones from a question's ~10 paragraphs) and keeps that question's
paragraphs only: the same cost as an unrestricted query.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from steper_bench.records import Paragraph
from steper_bench.retrieval.corpus import Corpus

META = "steper_meta.json"


def _stemmer():
    import Stemmer  # PyStemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], stemmer, return_ids: bool):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=return_ids, show_progress=False)


def doc_text(p: Paragraph) -> str:
    return f"{p.title}\n{p.text}"


class BM25Retriever:
    """`retrieve(queries, k, question_ids)`: best first; paragraphs with score 0 (no query term)
    are not returned, so an empty or stopword-only query gives []."""

    backend = "bm25"

    def __init__(self, corpus: Corpus, index_dir: Path | None = None):
        self.corpus = corpus
        self._stemmer = _stemmer()
        self._row = {p.pid: i for i, p in enumerate(corpus.paragraphs)}
        self._question_rows = {
            qid: np.array([self._row[pid] for pid in pids], dtype=np.int64)
            for qid, pids in corpus.question_pids.items()
        }
        self.loaded_from_disk = False
        self.index_path = index_dir / corpus.content_hash() if index_dir is not None else None
        self.bm25 = self._load_or_build()

    # -- index ----------------------------------------------------------------------------
    def _build(self):
        import bm25s

        bm25 = bm25s.BM25()
        if self.corpus.paragraphs:
            tokens = tokenize([doc_text(p) for p in self.corpus.paragraphs], self._stemmer, True)
            bm25.index(tokens, show_progress=False)
        return bm25

    def _load_or_build(self):
        path = self.index_path
        if path is not None and (path / META).exists():
            bm25 = self._load(path)
            if bm25 is not None:
                self.loaded_from_disk = True
                return bm25
        bm25 = self._build()
        if path is not None and self.corpus.paragraphs:
            self._save(bm25, path)
        return bm25

    def _load(self, path: Path):
        import bm25s

        meta = json.loads((path / META).read_text())
        if meta.get("corpus_hash") != self.corpus.content_hash() or meta.get("num_docs") != len(self.corpus):
            logging.getLogger(__name__).warning("index at %s does not match the corpus: rebuilding", path)
            return None
        return bm25s.BM25.load(str(path), show_progress=False)

    def _save(self, bm25, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            bm25.save(str(tmp), show_progress=False)
            meta = {"corpus_hash": self.corpus.content_hash(), "num_docs": len(self.corpus), "mode": self.corpus.mode}
            (tmp / META).write_text(json.dumps(meta))
            try:
                tmp.rename(path)
            except OSError:  # another process saved the same index first: keep theirs
                if not (path / META).exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- search ---------------------------------------------------------------------------
    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        if question_ids is not None and len(question_ids) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(question_ids)} question ids")
        if not self.corpus.paragraphs or not queries:
            return [[] for _ in queries]
        restrict = self.corpus.mode == "per-question" and question_ids is not None
        tokens = tokenize([q or "" for q in queries], self._stemmer, False)
        out = []
        for i, toks in enumerate(tokens):
            rows = self._rows_for(question_ids[i]) if restrict else None
            out.append([self.corpus.paragraphs[r] for r in self._top_k(toks, k, rows)])
        return out

    def _rows_for(self, qid: str) -> np.ndarray:
        rows = self._question_rows.get(qid)
        if rows is None:
            raise KeyError(f"question {qid!r} is not in this per-question corpus")
        return rows

    def _top_k(self, toks: list[str], k: int, rows: np.ndarray | None) -> list[int]:
        ids = self.bm25.get_tokens_ids(toks)
        if not ids:
            return []
        scores = self.bm25.get_scores_from_ids(ids)
        if rows is None:
            rows = np.flatnonzero(scores > 0)
        else:
            rows = rows[scores[rows] > 0]
        if len(rows) > k:
            rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
        # Best first; ties broken by corpus order so results never depend on batching.
        order = np.lexsort((rows, -scores[rows]))
        return rows[order].tolist()


def make(recipe, corpus: Corpus, index_dir: Path | None) -> BM25Retriever:
    return BM25Retriever(corpus, index_dir)

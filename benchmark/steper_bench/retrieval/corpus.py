"""The retrieval corpus: paragraphs addressed by row, read in chunks by the index builders.

pooled:       paragraphs deduplicated by (title, text), keeping the first pid seen (IRCoT indexes
              one corpus per dataset). Built from the loaded questions, or (`corpus.pool_splits`,
              `corpus.pool_files`) from every record of named splits or files (`pooled_from`).
per-question: each question's own paragraphs (the distractor setting); `question_pids` maps a
              question id to its pids so that retrieval can be restricted to them.
file:         `retrieval.store.FileCorpus`, the same interface over paragraphs on disk.

Both kinds have `len`, `corpus[row]`, `chunk(i)` / `n_chunks` (fixed-size row ranges: an index
is built chunk by chunk and resumes at the first unfinished one) and `content_hash()`, which
names the index folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from steper_bench.records import Paragraph, Question

CorpusMode = Literal["pooled", "per-question"]
CHUNK = 100_000  # paragraphs per index chunk (corpus.index_chunk)


@dataclass
class Corpus:
    mode: str
    paragraphs: list[Paragraph]
    question_pids: dict[str, list[str]] = field(default_factory=dict)  # per-question mode only
    chunk_size: int = CHUNK
    _hash: str | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paragraphs)

    def __getitem__(self, row: int) -> Paragraph:
        return self.paragraphs[row]

    @property
    def n_chunks(self) -> int:
        return -(-len(self) // self.chunk_size)

    def chunk(self, i: int) -> list[Paragraph]:
        return self.paragraphs[i * self.chunk_size : (i + 1) * self.chunk_size]

    def content_hash(self) -> str:
        """sha256 over mode, pids, titles and texts (16 hex): names the saved index."""
        if self._hash is None:
            h = hashlib.sha256(self.mode.encode())
            for p in self.paragraphs:
                for part in (p.pid, p.title, p.text):
                    h.update(b"\x00")
                    h.update(part.encode("utf-8"))
            self._hash = h.hexdigest()[:16]
        return self._hash


def build_corpus(questions: list[Question], mode: CorpusMode = "pooled", chunk_size: int = CHUNK) -> Corpus:
    if mode == "pooled":
        return pooled_from(((p.pid, p.title, p.text) for q in questions for p in q.paragraphs), chunk_size)
    if mode == "per-question":
        return _per_question(questions, chunk_size)
    raise ValueError(f"corpus mode must be 'pooled' or 'per-question', got {mode!r}")


def pooled_from(paragraphs: Iterable[tuple[str, str, str]], chunk_size: int = CHUNK) -> Corpus:
    """(pid, title, text) in order -> a pooled corpus. A pooled paragraph is not "supporting" in
    general: that flag belongs to a question."""
    seen: set[tuple[str, str]] = set()
    out: list[Paragraph] = []
    for pid, title, text in paragraphs:
        if (title, text) in seen:
            continue
        seen.add((title, text))
        out.append(Paragraph(pid, title, text))
    return Corpus("pooled", out, chunk_size=chunk_size)


def _per_question(questions: list[Question], chunk_size: int) -> Corpus:
    out: list[Paragraph] = []
    seen_pids: set[str] = set()
    question_pids: dict[str, list[str]] = {}
    for q in questions:
        if q.id in question_pids:  # the same question loaded twice: index it once
            continue
        pids = question_pids[q.id] = []
        for p in q.paragraphs:
            pids.append(p.pid)
            if p.pid not in seen_pids:
                seen_pids.add(p.pid)
                out.append(p)
    return Corpus("per-question", out, question_pids, chunk_size=chunk_size)

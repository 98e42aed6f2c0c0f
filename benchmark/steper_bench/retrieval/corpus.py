"""The retrieval corpus built from loaded questions.

pooled:       every paragraph of the given questions, deduplicated by (title, text), keeping the
              first pid seen (IRCoT indexes one corpus per dataset).
per-question: each question's own paragraphs (the distractor setting); `question_pids` maps a
              question id to its pids so that retrieval can be restricted to them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from steper_bench.records import Paragraph, Question

CorpusMode = Literal["pooled", "per-question"]


@dataclass
class Corpus:
    mode: str
    paragraphs: list[Paragraph]
    question_pids: dict[str, list[str]] = field(default_factory=dict)  # per-question mode only
    _hash: str | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paragraphs)

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


def build_corpus(questions: list[Question], mode: CorpusMode = "pooled") -> Corpus:
    if mode == "pooled":
        return _pooled(questions)
    if mode == "per-question":
        return _per_question(questions)
    raise ValueError(f"corpus mode must be 'pooled' or 'per-question', got {mode!r}")


def _pooled(questions: list[Question]) -> Corpus:
    seen: set[tuple[str, str]] = set()
    out: list[Paragraph] = []
    for q in questions:
        for p in q.paragraphs:
            if (p.title, p.text) in seen:
                continue
            seen.add((p.title, p.text))
            # A pooled paragraph is not "supporting" in general: that flag is per question.
            out.append(Paragraph(p.pid, p.title, p.text))
    return Corpus("pooled", out)


def _per_question(questions: list[Question]) -> Corpus:
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
    return Corpus("per-question", out, question_pids)

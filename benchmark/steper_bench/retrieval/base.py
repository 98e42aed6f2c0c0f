"""The Retriever protocol: many queries in, top-K paragraphs for each out."""

from __future__ import annotations

from typing import Protocol

from steper_bench.records import Paragraph


class Retriever(Protocol):
    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        """Top-k paragraphs per query, best first. `question_ids` restricts each query to that
        question's own paragraphs in the per-question (distractor) corpus mode."""
        ...

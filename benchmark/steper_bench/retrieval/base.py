"""The Retriever protocol: many queries in, top-K paragraphs for each out."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from steper_bench.records import Paragraph


class Retriever(Protocol):
    def retrieve(self, queries: list[str], k: int, question_ids: list[str] | None = None) -> list[list[Paragraph]]:
        """Top-k paragraphs per query, best first. `question_ids` restricts each query to that
        question's own paragraphs in the per-question (distractor) corpus mode."""
        ...


@contextmanager
def index_lock(final: Path) -> Iterator[None]:
    """One process at a time builds the index folder `final` (`<final>.lock`, an flock): indexes
    under runs/index are shared by run folders, so two evals or builds of one corpus would
    otherwise merge and delete each other's partial chunks. The lock ends with the process."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.with_name(final.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

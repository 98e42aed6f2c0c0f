"""The Retriever protocol: many queries in, top-K paragraphs for each out."""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from steper_bench.records import Paragraph

META = "steper_meta.json"  # written last into a finished index folder


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


def publish_folder(final: Path, partial: Path, fill: Callable[[Path], None]) -> Path:
    """Write an index folder atomically: `fill(tmp)` writes a temporary folder beside `final`, which
    is then renamed into place (another process that finished first wins), and the finished
    chunks in `partial` are removed."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        fill(tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same folder first: keep theirs
            if not (final / META).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(partial, ignore_errors=True)
    return final

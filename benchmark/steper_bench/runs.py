"""Where each stage writes: one run folder per build, keyed by the build-stage hash.

runs/<name>-<build hash>/
  recipe.yaml                 the resolved recipe (env references left unexpanded)
  trajectories/<split>.jsonl  teacher trajectories, appended and flushed per batch
  dataset/                    Hub layout: <config>/<split>-*.parquet, README.md (the card)
  train/<method>-<its train hash>/ checkpoints, final model, weights.json, model card
  build.log                   the build's own lines, appended per run
  logs/<stage>.log            other libraries' logging, warnings and progress (CLI without -v)
The request cache (teacher, judge, retrieval) is shared by all runs: runs/cache.sqlite; so are the
retrieval indexes, runs/index/<corpus hash>/<backend>/ (a 5.2M-paragraph index is built once for
every recipe over that corpus; `steper-bench index` builds it ahead).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from steper_bench.recipe import Recipe, digest


@dataclass(frozen=True)
class RunPaths:
    runs_dir: Path
    root: Path
    recipe: Recipe

    @classmethod
    def for_recipe(cls, recipe: Recipe) -> RunPaths:
        # Outputs go where the user runs the command (like results.duckdb); inputs named in the
        # recipe resolve from the recipe's folder.
        runs_dir = Path(os.path.expanduser(recipe.runs_dir)).absolute()
        return cls(runs_dir, runs_dir / f"{recipe.name}-{recipe.stage_hash('build')}", recipe)

    @property
    def cache(self) -> Path:
        return self.runs_dir / "cache.sqlite"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    def trajectories(self, split: str) -> Path:
        return self.root / "trajectories" / f"{split}.jsonl"

    @property
    def indexes(self) -> Path:
        """Retrieval indexes of every run, one folder per corpus content hash (made by make_retriever)."""
        return self.runs_dir / "index"

    def train(self, method: str) -> Path:
        return self.root / "train" / f"{method}-{self.recipe.train_hash(method)}"

    @property
    def tiny_student(self) -> Path:
        """The offline student built from scratch (`train.student: tiny`), one per size setting."""
        tiny = self.recipe.train.tiny
        if tiny.is_default():
            return self.root / "tiny-student"
        return self.root / f"tiny-student-{digest(tiny.model_dump())[:8]}"

    @property
    def log(self) -> Path:
        return self.root / "build.log"

    @property
    def logs(self) -> Path:
        """Other libraries' output per stage (<stage>.log), when the CLI keeps the console quiet."""
        return self.root / "logs"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename: a crash or a full
    disk never leaves a half-written file under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: Path, array) -> None:
    """`np.save` through `atomic_write_bytes`."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())

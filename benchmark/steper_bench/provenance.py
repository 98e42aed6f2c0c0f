"""What every artifact records about how it was made: package versions and the git commit."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

# The stack whose versions can change results; one list for cards, model dirs and the database.
STACK = ("steper-bench", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub",
         "pyarrow", "lm_eval", "openai", "duckdb", "bm25s")


def package_versions(names: tuple[str, ...] = STACK) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(folder: Path | None = None) -> str | None:
    """The commit of the checkout holding `folder` (default: steper-bench's own code), or None
    outside a git checkout (e.g. an installed wheel, whose version is in package_versions)."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder or Path(__file__).parent, capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None

"""lm-evaluation-harness integration: the `steper-multistep` model and the steper_* tasks.

Importing this package registers the model with lm-eval. `task_folder()` writes one task YAML
per registered dataset (steper_hotpotqa, steper_2wikimultihopqa, steper_musique, ... = the
dataset spec's `lm_eval_task`) from one template, so a dataset added by a file gets its task
too. Their metrics are steper_bench.metrics' EM / F1 / Acc through `!function` hooks, and their
documents come from a custom loader (`hooks.load_docs`), so no data path is baked into a YAML.

From Python, `steper_bench.evaluation.evaluate(...)` runs everything. From the harness CLI:

    python -m steper_bench.lm_eval --model steper-multistep \
        --model_args recipe=recipes/quickstart.yaml,model=supporting-facts \
        --tasks steper_hotpotqa --log_samples --output_path out/

(our task folder is added as --include_path unless you pass one).
"""

from __future__ import annotations

from pathlib import Path

from steper_bench.lm_eval.model import MultiStepLM  # noqa: F401  (registers "steper-multistep")

TEMPLATE = Path(__file__).with_name("tasks") / "task_template.yaml.txt"


def _git_hash_quietly() -> str | None:
    """lm-eval records `git describe` of the current folder and lets git print "fatal: not a git
    repository" to the console outside a checkout; ours asks git with its stderr closed."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _quiet_lm_eval() -> None:
    import lm_eval.evaluator

    lm_eval.evaluator.get_git_commit_hash = _git_hash_quietly


_quiet_lm_eval()

__all__ = ["MultiStepLM", "task_folder", "task_name"]


def task_name(dataset: str) -> str:
    from steper_bench.sources import get_spec

    return get_spec(dataset).lm_eval_task


def task_folder() -> Path:
    """A folder (made once per process) holding the task YAML of every registered dataset."""
    import tempfile

    from steper_bench.sources import dataset_names

    names = tuple(dataset_names())
    folder = _FOLDERS.get(names)
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="steper-lm-eval-tasks-"))
        template = TEMPLATE.read_text(encoding="utf-8")
        for name in names:
            task = task_name(name)
            (folder / f"{task}.yaml").write_text(template.replace("{task}", task).replace("{dataset}", name), encoding="utf-8")
        _FOLDERS[names] = folder
    return folder


_FOLDERS: dict[tuple[str, ...], Path] = {}

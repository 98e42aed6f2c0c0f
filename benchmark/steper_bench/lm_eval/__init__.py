"""lm-evaluation-harness integration: the `steper-multistep` model and the steper_* tasks.

Importing this package registers the model with lm-eval. Tasks live in `TASKS_DIR` (one YAML
per dataset: steper_hotpotqa, steper_2wikimultihopqa, steper_musique); their metrics are
steper_bench.metrics' EM / F1 / Acc through `!function` hooks, and their documents come from a
custom loader (`hooks.load_docs`), so no data path is baked into a YAML.

From Python, `steper_bench.evaluation.evaluate(...)` runs everything. From the harness CLI:

    python -m steper_bench.lm_eval --model steper-multistep \
        --model_args recipe=recipes/quickstart.yaml,model=supporting-facts \
        --tasks steper_hotpotqa --log_samples --output_path out/

(our task folder is added as --include_path unless you pass one).
"""

from __future__ import annotations

from pathlib import Path

from steper_bench.lm_eval.model import MultiStepLM  # noqa: F401  (registers "steper-multistep")

TASKS_DIR = Path(__file__).with_name("tasks")
TASK_NAMES = {"hotpotqa": "steper_hotpotqa", "2wikimultihopqa": "steper_2wikimultihopqa", "musique": "steper_musique"}

__all__ = ["MultiStepLM", "TASKS_DIR", "TASK_NAMES"]

"""The wheel carries what the CLI needs at run time: card templates, the Streamlit app, prompt
templates and demonstrations, and the lm-eval task YAMLs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_templates_app_prompts_and_tasks(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("steper_bench-*.whl"))).namelist())
    for f in ("steper_bench/cards/dataset_card.md", "steper_bench/cards/model_card.md",
              "steper_bench/leaderboard_app/app.py", "steper_bench/reasoning/prompts/ircot/step.j2",
              "steper_bench/reasoning/prompts/self-ask/step.j2",
              "steper_bench/lm_eval/tasks/task_template.yaml.txt", "steper_bench/evaluation/rubric_v1.md"):
        assert f in names, f
    for framework in ("ircot", "self-ask"):
        for dataset in ("hotpotqa", "2wikimultihopqa", "musique"):
            assert f"steper_bench/reasoning/prompts/{framework}/{dataset}.json" in names
    assert "steper_bench/reasoning/frameworks/ircot.py" in names

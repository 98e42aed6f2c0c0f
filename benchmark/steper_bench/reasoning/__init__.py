"""Multi-step reasoning: the one batched loop, the frameworks it drives, step prompts.

    settings = LoopSettings.from_recipe(recipe, role="teacher")   # or "student"
    trajectories = run_loop(questions, retriever, generator, settings, on_finished=writer)

`LoopSettings.prompt` is the one place step prompts are made (loop and step-wise builder);
everything framework-specific (queries, templates, stops, step parsing, answers, step roles,
silver steps) is in `frameworks/<name>.py`.
"""

from steper_bench.reasoning.loop import LoopSettings, run_loop, trajectory_step_prompt
from steper_bench.reasoning.prompts import Demo, demo_question_ids, load_demos, load_template, prompt_hash

__all__ = ["Demo", "LoopSettings", "demo_question_ids", "load_demos", "load_template", "prompt_hash", "run_loop",
           "trajectory_step_prompt"]

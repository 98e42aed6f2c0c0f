"""Multi-step reasoning: the IRCoT loop, step prompts and answer parsing.

    settings = LoopSettings.from_recipe(recipe, role="teacher")   # or "student"
    trajectories = run_loop(questions, retriever, generator, settings, on_finished=writer)

`prompts.render_step` is the one renderer of step prompts (loop and step-wise builder);
`answers.first_sentence` cuts a generation to one step; answers are parsed by
`steper_bench.metrics.extract_answer`.
"""

from steper_bench.reasoning.answers import extract_answer, first_sentence, sentence_complete
from steper_bench.reasoning.loop import LoopSettings, run_loop, step_prompt, trajectory_step_prompt
from steper_bench.reasoning.prompts import (
    Demo,
    demo_question_ids,
    load_demos,
    load_template,
    prompt_hash,
    render_step,
)

__all__ = [
    "Demo", "LoopSettings", "demo_question_ids", "extract_answer", "first_sentence", "load_demos",
    "load_template", "prompt_hash", "render_step", "run_loop", "sentence_complete", "step_prompt",
    "trajectory_step_prompt",
]

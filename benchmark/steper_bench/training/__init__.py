"""Training: step-wise SFT of a student with a method (steper_bench/methods.py): StepER's
difficulty-aware weighting, its step-data and weighting ablations, and vanilla KD."""

from steper_bench.training.data import encode_example, load_step_data
from steper_bench.training.pipeline import TrainResult, render_model_card, train

__all__ = ["TrainResult", "encode_example", "load_step_data", "render_model_card", "train"]

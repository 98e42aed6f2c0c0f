"""Training: difficulty-aware step-wise SFT (StepER), its uniform ablation, and vanilla KD."""

from steper_bench.training.data import METHODS, METHOD_CONFIGS, STEP_KINDS, encode_example, load_step_data
from steper_bench.training.pipeline import TrainResult, render_model_card, train

__all__ = ["METHODS", "METHOD_CONFIGS", "STEP_KINDS", "TrainResult", "encode_example", "load_step_data",
           "render_model_card", "train"]

"""steper-bench: reproduce and extend StepER (step-wise KD for multi-step retrieval-augmented LMs)."""

__version__ = "0.1.0"

"""Student evaluation: the multi-step loop scored through lm-eval, step-level measures, the
LLM judge, the DuckDB results store and the leaderboard table."""

from steper_bench.evaluation.evaluate import EvalResult, default_models, eval_hash, evaluate, make_run_id
from steper_bench.evaluation.judge import RUBRIC_VERSION, JudgeSummary, PairwiseSummary, judge_pairwise, judge_runs
from steper_bench.evaluation.models import parse_model_spec
from steper_bench.evaluation.report import leaderboard_markdown

__all__ = [
    "EvalResult", "JudgeSummary", "PairwiseSummary", "RUBRIC_VERSION", "default_models", "eval_hash", "evaluate",
    "judge_pairwise", "judge_runs", "leaderboard_markdown", "make_run_id", "parse_model_spec",
]

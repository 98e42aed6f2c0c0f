#!/usr/bin/env bash
# Mutation testing (mutmut 3) over the code that decides results: metrics, step-wise expansion,
# the trainer's loss, the cache key and recipe hashing. Settings: [tool.mutmut] in pyproject.toml.
#
#   bash tests/mutation/run.sh              # the scope below (about 30 min on 2 cores)
#   bash tests/mutation/run.sh 'steper_bench.metrics.*'   # some mutants only (mutmut name globs)
#   PYTHON=.venv/bin/python bash tests/mutation/run.sh
#
# mutmut names modules after their path under src/, so the package is staged as
# build/mutation/src/steper_bench (with cards/ and leaderboard_app/ inside it, as the installed
# package has them), next to tests/, data/ and recipes/. Results: build/mutation/summary.txt
# (score per module), survivors.md (each survivor's diff), run.log; `mutmut show NAME` there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python}
stage=$repo/build/mutation
scope=(
  'steper_bench.metrics.*'
  'steper_bench.stepwise.*'
  'steper_bench.cache.x__secret_paths*' 'steper_bench.cache.x__check_no_secrets*'
  'steper_bench.cache.xǁRequestCacheǁkey*'
  'steper_bench.training.trainer.xǁStepERTrainerǁcompute_loss*'
  'steper_bench.training.trainer.xǁStepERTrainerǁget_batch_samples*'
  'steper_bench.training.trainer.xǁStepERTrainerǁ_end_window*'
  'steper_bench.training.trainer.xǁStepERTrainerǁ_step_log_variances*'
  'steper_bench.recipe.xǁRecipeǁhashed_dict*' 'steper_bench.recipe.xǁRecipeǁcontent_hash*'
  'steper_bench.recipe.xǁRecipeǁstage_hash*' 'steper_bench.recipe.xǁRecipeǁtrain_hash*'
  'steper_bench.recipe.x_digest*' 'steper_bench.recipe.x__hashed*' 'steper_bench.recipe.x__jsonable*'
)
[ $# -gt 0 ] && scope=("$@")

rm -rf "$stage"
mkdir -p "$stage/src"
cp -r "$repo/benchmark/steper_bench" "$stage/src/steper_bench"
rm -rf "$stage/src/steper_bench/cards" "$stage/src/steper_bench/leaderboard_app"  # a checkout may link them
cp -r "$repo/cards" "$stage/src/steper_bench/cards"
cp -r "$repo/leaderboard_app" "$stage/src/steper_bench/leaderboard_app"
cp -r "$repo/tests" "$repo/data" "$repo/recipes" "$repo/pyproject.toml" "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cd "$stage"
unset PYTHONPATH  # the staged copy, never the checkout, is what the tests import
"$python" -m mutmut run "${scope[@]}" > run.log 2>&1 || { tail -c 3000 run.log; exit 1; }
"$python" "$repo/tests/mutation/summary.py" "${scope[@]}" | tee summary.txt

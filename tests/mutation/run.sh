#!/usr/bin/env bash
# Mutation testing (mutmut 3) over the code that decides results: metrics, step-wise expansion,
# the trainer's loss, the cache key and recipe hashing. Settings: [tool.mutmut] in pyproject.toml.
#
#   bash tests/mutation/run.sh            # the scope below: about 30 min on 2 busy cores
#   bash tests/mutation/run.sh --ddp      # then: the trainer mutants that survived, against the
#                                         # 2-process test (about 35 s each)
#   bash tests/mutation/run.sh 'steper_bench.metrics.*'   # some mutants only (mutmut name globs)
#   PYTHON=.venv/bin/python bash tests/mutation/run.sh
#
# mutmut names modules after their path under src/, so the package is staged as
# build/mutation/src/steper_bench (with cards/ and leaderboard_app/ inside it, as the installed
# package has them), next to tests/, data/ and recipes/. The main pass runs the fast unit tests
# (not slow); data-parallel branches (num_processes > 1) are only reached by the 2-process test,
# which the --ddp pass runs, in build/mutation-ddp. Results: build/mutation/summary.txt (score per
# module, both passes), survivors.md (each survivor's diff), run.log; `mutmut show NAME` there.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python}
mode=main
if [ "${1:-}" = "--ddp" ]; then mode=ddp; shift; fi
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
main=$repo/build/mutation
stage=$main
[ "$mode" = ddp ] && stage=$repo/build/mutation-ddp

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
if [ "$mode" = ddp ]; then
  # the 2-process test alone, over the trainer mutants the main pass left alive
  mapfile -t names < <("$python" "$repo/tests/mutation/summary.py" --survivors-of "$main" 'steper_bench.training.*')
  [ ${#names[@]} -gt 0 ] || { echo "no trainer survivors in $main (run the main pass first)"; exit 0; }
  "$python" - <<'PY'
import re
text = open("pyproject.toml").read()
text = re.sub(r'pytest_add_cli_args = \[[^\]]*\]', 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not perf", "-q"]', text)
text = re.sub(r'pytest_add_cli_args_test_selection = \[[^\]]*\]',
              'pytest_add_cli_args_test_selection = ["tests/unit/test_training_accumulation.py"]', text)
open("pyproject.toml", "w").write(text)
PY
  "$python" -m mutmut run "${names[@]}" > run.log 2>&1 || { tail -c 3000 run.log; exit 1; }
  cd "$main"
else
  "$python" -m mutmut run "${scope[@]}" > run.log 2>&1 || { tail -c 3000 run.log; exit 1; }
fi
"$python" "$repo/tests/mutation/summary.py" --ddp "$repo/build/mutation-ddp" "${scope[@]}" | tee summary.txt

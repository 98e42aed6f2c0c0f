"""`python -m steper_bench.lm_eval ...`: the lm-eval CLI with our model registered.

The plain `lm_eval` command has no plugin hook, so this imports ours first and hands over.
"""

import sys

import steper_bench.lm_eval  # noqa: F401  (registers steper-multistep)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "lm_eval"
    cli_evaluate()


if __name__ == "__main__":
    main()

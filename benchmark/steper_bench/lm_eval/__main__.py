"""`python -m steper_bench.lm_eval ...`: the lm-eval CLI with our model registered and our
tasks found.

The plain `lm_eval` command has no plugin hook, so this imports ours first (registering
`steper-multistep`), adds our task folder as `--include_path` unless one is given, and hands over.
"""

import sys

from steper_bench.lm_eval import task_folder


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    if not any(a == "--include_path" or a.startswith("--include_path=") for a in sys.argv[1:]):
        sys.argv += ["--include_path", str(task_folder())]
    sys.argv[0] = "lm_eval"
    cli_evaluate()


if __name__ == "__main__":
    main()

"""Mutation score of a mutmut run over the given scope (mutant name globs), from the per-file
results mutmut keeps (mutants/**/*.py.meta). Mutants listed in tests/mutation/equivalent.txt
(name, then the reason) behave exactly like the original and leave the denominator.

    python summary.py [--ddp DIR] GLOB...        (from build/mutation, as run.sh does): the table;
                                                 results in DIR (the --ddp pass) override
    python summary.py --survivors-of DIR GLOB... the survivors there, not listed as equivalent
"""

from __future__ import annotations

import collections
import fnmatch
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KILLED = {1, 3, 36, 24, -24, 152, 255}  # a failing test, a pytest error, a timeout
SURVIVED = {0}


def equivalent() -> dict[str, str]:
    out = {}
    for line in (HERE / "equivalent.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def results(folder: Path, scope: list[str]) -> dict[str, int | None]:
    found = {}
    for meta in (folder / "mutants").rglob("*.py.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code is not None and any(fnmatch.fnmatch(name, g) for g in scope):
                found[name] = code
    return found


def table(found: dict[str, int], equiv: dict[str, str]) -> list[str]:
    per = collections.defaultdict(collections.Counter)
    survivors = []
    for name, code in sorted(found.items()):
        kind = ("equivalent" if name in equiv else "killed" if code in KILLED else
                "survived" if code in SURVIVED else f"other ({code})")
        per[name.split(".x")[0]][kind] += 1
        if kind == "survived":
            survivors.append(name)
    total = collections.Counter()
    print(f"{'module':32} {'mutants':>8} {'killed':>7} {'equiv.':>7} {'survived':>9} {'other':>6}")
    for module, c in sorted(per.items()):
        total.update(c)
        other = sum(v for k, v in c.items() if k not in ("killed", "equivalent", "survived"))
        print(f"{module:32} {sum(c.values()):>8} {c['killed']:>7} {c['equivalent']:>7} {c['survived']:>9} {other:>6}")
    scored = sum(total.values()) - total["equivalent"]
    print(f"score: {total['killed']}/{scored} = {100 * total['killed'] / max(scored, 1):.1f}% "
          f"({total['equivalent']} equivalent mutants left out)")
    return survivors


def main(argv: list[str]) -> None:
    if argv[0] == "--survivors-of":
        found, equiv = results(Path(argv[1]), argv[2:]), equivalent()
        print("\n".join(n for n, code in sorted(found.items()) if code in SURVIVED and n not in equiv))
        return
    ddp = None
    if argv[0] == "--ddp":
        ddp, argv = Path(argv[1]), argv[2:]
    found, equiv = results(Path("."), argv), equivalent()
    if ddp is not None and (ddp / "mutants").exists():
        found.update(results(ddp, argv))  # the 2-process test's verdict on the trainer survivors
    survivors = table(found, equiv)
    stale = sorted(set(equiv) - set(found))
    if stale:
        print(f"equivalent.txt names {len(stale)} mutants this run did not produce: {stale[:5]}")
    with open("survivors.md", "w") as f:
        for name in survivors:
            show = [sys.executable, "-m", "mutmut", "show", name]
            diff = subprocess.run(show, capture_output=True, text=True, check=False)
            f.write(f"## {name}\n```diff\n{diff.stdout.strip()}\n```\n")
    print(f"{len(survivors)} survivors (diffs in survivors.md): {survivors}")


if __name__ == "__main__":
    main(sys.argv[1:])

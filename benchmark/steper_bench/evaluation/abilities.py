"""The reasoning abilities the LLM judge grades: one table, read by the judge, the store, the
commands and the leaderboard.

Each ability grades the steps that play one role in the chain (the framework says which steps
play which role: reasoning/frameworks/base.py `roles`), with its own section of the rubric
(rubric_v1.md). The paper names the three abilities and pairs them with the first-, mid- and
final-step data; the mapping of steps to roles per framework is ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ability:
    name: str  # stored in judgments.ability and as metric judge_<name>
    role: str  # the step role it grades: first | middle | last
    rubric: str  # the rubric section with its criteria
    label: str  # short column label


ABILITIES = (
    Ability("initialization", "first", "initialization", "init."),
    Ability("expansion", "middle", "expansion", "exp."),
    Ability("aggregation", "last", "aggregation", "agg."),
)
NAMES = tuple(a.name for a in ABILITIES)


def graded_steps(framework, n: int) -> list[tuple[str, int]]:
    """(ability, step) pairs graded for a chain of n steps under `framework`, by ability."""
    roles = framework.roles(n)
    return [(a.name, i) for a in ABILITIES for i, r in enumerate(roles, 1) if a.role in r]

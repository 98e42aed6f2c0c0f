"""Reasoning frameworks: one module each, over `base.Framework`, listed in
`steper_bench.registry.FRAMEWORKS`.

| name | module | retrieval | steps |
| --- | --- | --- | --- |
| ircot | ircot.py | question, then the last sentence | one sentence each, up to max_steps (+1 forced) |
| self-ask | self_ask.py | question, then each follow-up question | "Intermediate answer / Follow up" each |
| single-step | single_step.py | once, with the question | one: the whole chain |
| no-retrieval | no_retrieval.py | none | one: the whole chain, closed book |

Adding a framework: a module here with `FRAMEWORK = MyFramework()` (a `base.Framework`
subclass), its template under reasoning/prompts/<name>/, and one line in registry.py.
"""

from steper_bench.reasoning.frameworks.base import KIND_OF_ROLE, ROLES, Framework, SilverUnavailable

__all__ = ["Framework", "KIND_OF_ROLE", "ROLES", "SilverUnavailable", "get_framework"]


def get_framework(name: str) -> Framework:
    from steper_bench.registry import FRAMEWORKS

    return FRAMEWORKS.get(name)

"""Generators: pick the backend a GeneratorConfig names.

    gen = make_generator(recipe.teacher, cache, max_new_tokens=recipe.framework.max_new_tokens)
    results = gen.generate([StepRequest(...), ...])

Each backend module registers a factory `factory(cfg, cache, *, max_new_tokens) -> Generator`
with `@register(name)` (generation/base.py); modules are imported lazily, so a backend's heavy
dependencies load only when it is used. Adding a backend = one module + one line in _MODULES.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from steper_bench.generation.base import BACKENDS, Generator, StepRequest, StepResult, register

if TYPE_CHECKING:
    from steper_bench.cache import RequestCache
    from steper_bench.recipe import GeneratorConfig

__all__ = ["BACKENDS", "Generator", "GeneratorError", "StepRequest", "StepResult", "make_generator", "register"]

_MODULES = {
    "openai": "steper_bench.generation.openai_compat",
    "transformers": "steper_bench.generation.local",
    "supporting-facts": "steper_bench.generation.supporting_facts",
}


class GeneratorError(RuntimeError):
    """A failure no retry can fix (bad credentials, unknown model or endpoint): stop the run."""


def make_generator(cfg: GeneratorConfig, cache: RequestCache | None, *, max_new_tokens: int) -> Generator:
    if cfg.backend not in BACKENDS:
        module = _MODULES.get(cfg.backend)
        if module is None:
            raise ValueError(f"unknown generator backend {cfg.backend!r} (allowed: {', '.join(sorted(_MODULES))})")
        importlib.import_module(module)
    return BACKENDS[cfg.backend](cfg, cache, max_new_tokens=max_new_tokens)

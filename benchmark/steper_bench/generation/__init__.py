"""Generators: pick the backend a GeneratorConfig names.

    gen = make_generator(recipe.teacher, cache, max_new_tokens=recipe.framework.max_new_tokens)
    results = gen.generate([StepRequest(...), ...])

Each backend is a module with a factory `make(cfg, cache, *, max_new_tokens) -> Generator`, listed
in `steper_bench.registry.GENERATORS` (one line); modules are imported lazily, so a backend's
heavy dependencies load only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from steper_bench.generation.base import Generator, StepRequest, StepResult

if TYPE_CHECKING:
    from steper_bench.cache import RequestCache
    from steper_bench.recipe import GeneratorConfig

__all__ = ["Generator", "GeneratorError", "StepRequest", "StepResult", "make_generator"]


class GeneratorError(RuntimeError):
    """A failure no retry can fix (bad credentials, unknown model or endpoint): stop the run."""


def make_generator(cfg: GeneratorConfig, cache: RequestCache | None, *, max_new_tokens: int) -> Generator:
    from steper_bench.registry import GENERATORS, lookup

    factory = lookup(GENERATORS, cfg.backend, GeneratorError)
    return factory(cfg, cache, max_new_tokens=max_new_tokens)

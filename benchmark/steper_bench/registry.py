"""Names -> lazily imported entries, for every pluggable kind (lm-evaluation-harness style).

    from steper_bench.registry import DATASETS, FRAMEWORKS, RETRIEVERS, GENERATORS
    spec = DATASETS.get("hotpotqa")          # imports steper_bench.sources.hotpotqa on first use
    DATASETS.names()                         # what recipe validation allows, without importing

Built-in entries are one line each at the bottom of this file ("module:attr" targets, imported
only when used, so `import steper_bench` stays cheap). Code outside the package adds entries with
`DATASETS.register("name", obj)` (or as a decorator) in a module that a recipe lists under
`imports:` or that an installed package exposes under the `steper_bench.plugins` entry-point
group. A wrong name is an error that lists the known names with a did-you-mean.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError, ValueError):
    """An unknown name; the message lists the known ones and the closest match."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, field: str):
        self.kind, self.field = kind, field  # e.g. "dataset", "source.dataset" (for messages)
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, target: str) -> None:
        """A lazily imported entry: `target` is "package.module:attribute"."""
        if ":" not in target:
            raise ValueError(f"registry target {target!r} should be 'module:attribute'")
        self._targets[name] = target
        self._loaded.pop(name, None)

    def register(self, name: str, obj: T | None = None) -> Any:
        """Add an object now (`register(name, obj)`) or as a decorator (`@register(name)`)."""
        if obj is not None:
            self._loaded[name] = obj
            self._targets.pop(name, None)
            return obj

        def deco(o: T) -> T:
            self.register(name, o)
            return o

        return deco

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        _load_plugins()
        return sorted({*self._targets, *self._loaded})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def check(self, name: str) -> str:
        """`name` if known, else RegistryError naming the field, the known names and the closest."""
        if name in self:
            return name
        known = self.names()
        hint = difflib.get_close_matches(str(name), known, n=1)
        did = f"; did you mean '{hint[0]}'?" if hint else ""
        raise RegistryError(f"{name!r} is not a known {self.kind}{did} (allowed: {', '.join(known)})")

    def get(self, name: str) -> T:
        if name in self._loaded:
            return self._loaded[name]
        self.check(name)
        module, attr = self._targets[name].split(":", 1)
        obj = getattr(importlib.import_module(module), attr)
        self._loaded[name] = obj
        return obj

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]


DATASETS: Registry = Registry("dataset", "source.dataset")
FRAMEWORKS: Registry = Registry("framework", "framework.name")
RETRIEVERS: Registry = Registry("retrieval backend", "corpus.backend")
GENERATORS: Registry = Registry("generator backend", "backend")


# -- plugins ------------------------------------------------------------------------------------

_PLUGINS_LOADED = False


def _load_plugins() -> None:
    """Installed packages' `steper_bench.plugins` entry points, imported once."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="steper_bench.plugins"):
        ep.load()


def import_plugin(ref: str, base_dir: Path | None = None) -> None:
    """Import a module that registers entries: a dotted module name, or a .py file path
    (relative to `base_dir`, the recipe's folder)."""
    if ref.endswith(".py") or "/" in ref:
        path = Path(ref).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"imports: {ref}: no such file ({path})")
        name = f"steper_plugin_{abs(hash(str(path.resolve())))}"
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return
    importlib.import_module(ref)


def lookup(registry: Registry, name: str, on_error: Callable[[str], Exception] | None = None):
    """registry.get(name), turning an unknown name into `on_error(message)` when given."""
    try:
        return registry.get(name)
    except RegistryError as e:
        raise (on_error(str(e)) if on_error else e) from None


# -- built-in entries: one line each --------------------------------------------------------------

DATASETS.add("hotpotqa", "steper_bench.sources.hotpotqa:DATASET")
DATASETS.add("2wikimultihopqa", "steper_bench.sources.twowikimultihopqa:DATASET")
DATASETS.add("musique", "steper_bench.sources.musique:DATASET")
DATASETS.add("synthetic-world", "steper_bench.sources.synthetic_world:DATASET")

FRAMEWORKS.add("ircot", "steper_bench.reasoning.frameworks.ircot:FRAMEWORK")
FRAMEWORKS.add("self-ask", "steper_bench.reasoning.frameworks.self_ask:FRAMEWORK")
FRAMEWORKS.add("single-step", "steper_bench.reasoning.frameworks.single_step:FRAMEWORK")
FRAMEWORKS.add("no-retrieval", "steper_bench.reasoning.frameworks.no_retrieval:FRAMEWORK")

RETRIEVERS.add("bm25", "steper_bench.retrieval.bm25:make")
RETRIEVERS.add("elasticsearch", "steper_bench.retrieval.elasticsearch:make")
RETRIEVERS.add("dense", "steper_bench.retrieval.dense:make")

GENERATORS.add("openai", "steper_bench.generation.openai_compat:make")
GENERATORS.add("transformers", "steper_bench.generation.local:make")
GENERATORS.add("vllm", "steper_bench.generation.vllm_offline:make")
GENERATORS.add("supporting-facts", "steper_bench.generation.supporting_facts:make")

"""Experiment grids: one recipe, many cells (`matrix:`), each cell an ordinary recipe.

    matrix:                                  # the cartesian product of the axes: 3 x 2 = 6 cells
      source.dataset: [hotpotqa, 2wikimultihopqa, musique]
      train.student: [Qwen/Qwen2.5-0.5B-Instruct, Qwen/Qwen2.5-1.5B-Instruct]

    matrix:                                  # or a list of blocks: the union of their products
      - {train.student: [Qwen/Qwen2.5-0.5B-Instruct, Qwen/Qwen2.5-1.5B-Instruct]}
      - {train.train_questions: [1000, 5000]}

An axis is a dotted recipe key (as `--set` takes) and its list of values; a value may be a whole
section (`source: {dataset: musique, train_file: ...}`). A cell is the recipe with its values set,
so its hashes, run folder and results are those of the same recipe written out by hand: cells
that share a build share its run folder, and a re-run of a finished grid does no work.
`steper-bench run` runs every cell in order (or those `--only KEY=VALUE` selects; KEY may be a
field inside a section axis, e.g. `source.dataset=musique`);
`steper-bench validate` lists them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from steper_bench.recipe import Recipe, RecipeError, load_recipe, parse_override


@dataclass(frozen=True)
class Cell:
    index: int  # 1-based, in the order the grid runs
    values: dict[str, Any] = field(default_factory=dict)  # dotted key -> value

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={_flow(v)}" for k, v in self.values.items()]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_flow(v)}" for k, v in self.values.items()) or "(the recipe as written)"


def _flow(value: Any) -> str:
    """A value as one line of YAML, which `--set` parses back to the same value."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**9)
    return " ".join(line for line in text.splitlines() if line.strip() != "...").strip()


def raw_matrix(path: str | Path) -> Any:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return None  # load_recipe reports what is wrong with the file
    return data.get("matrix") if isinstance(data, dict) else None


def cells(path: str | Path) -> list[Cell]:
    """The recipe's cells ([one empty cell] when it has no matrix)."""
    matrix = raw_matrix(path)
    if matrix is None:
        return [Cell(1)]
    blocks = matrix if isinstance(matrix, list) else [matrix]
    out: list[Cell] = []
    seen: set[str] = set()
    for b, block in enumerate(blocks, 1):
        where = f"{path}: matrix" + (f" block {b}" if isinstance(matrix, list) else "")
        if not isinstance(block, dict) or not block:
            raise RecipeError(f"{where}: expected a mapping of dotted keys to lists of values, "
                              "e.g. matrix: {{train.student: [a, b]}}")
        for key, values in block.items():
            if not isinstance(values, list) or not values:
                raise RecipeError(f"{where}: {key}: expected a non-empty list of values, got {values!r}")
            parse_override(f"{key}=x")  # a well-formed dotted key
        for combo in itertools.product(*block.values()):
            values = dict(zip(block.keys(), combo))
            key = repr(sorted((k, _flow(v)) for k, v in values.items()))
            if key not in seen:  # the same cell from two blocks runs once
                seen.add(key)
                out.append(Cell(len(out) + 1, values))
    return out


def select(all_cells: list[Cell], only: list[str] | None) -> list[Cell]:
    """The cells whose values match every `KEY=VALUE` of `only` (values compared as YAML)."""
    picked = all_cells
    for item in only or []:
        keys, want = parse_override(item)
        key = ".".join(keys)
        if not any(_value_at(c, key)[0] for c in all_cells):
            axes = sorted({k for c in all_cells for k in c.values})
            raise RecipeError(f"--only {item}: {key} is not an axis of this grid (axes: {', '.join(axes) or 'none'})")
        wanted = _flow(want)
        picked = [c for c in picked if (hit := _value_at(c, key))[0] and _flow(hit[1]) == wanted]
    if not picked:
        raise RecipeError(f"--only {' '.join(only or [])}: no cell matches (run `steper-bench validate` to list them)")
    return picked


def _value_at(cell: Cell, key: str) -> tuple[bool, Any]:
    """(found, value) of `key` in a cell: an axis, or a field inside an axis's section value
    (`source.dataset` when the axis is `source`)."""
    if key in cell.values:
        return True, cell.values[key]
    for axis, node in cell.values.items():
        if key.startswith(axis + "."):
            for part in key[len(axis) + 1:].split("."):
                if not isinstance(node, dict) or part not in node:
                    return False, None
                node = node[part]
            return True, node
    return False, None


def load_cell(path: str | Path, cell: Cell, overrides: list[str] | None = None) -> Recipe:
    """The cell's recipe: the file, the cell's values, then the command's own --set overrides."""
    try:
        return load_recipe(path, [*cell.overrides, *(overrides or [])], grid=True)
    except RecipeError as e:
        if not cell.values:
            raise
        raise RecipeError(f"grid cell {cell.index} ({cell.label}): {e}") from None

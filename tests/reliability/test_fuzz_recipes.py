"""Bad recipes: wrong types, unknown keys, missing sections, YAML syntax errors, bad --set. Every
case is a clear `error:` line and exit code 2 (or a valid recipe, exit 0), never a traceback.
Hypothesis drives `steper-bench validate` in process (typer's CliRunner); a few run as real
subprocesses."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import tempfile
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.reliability import CLI, QUICKSTART, REPO, figure
from typer.testing import CliRunner

from pydantic import BaseModel

from steper_bench.cli import app
from steper_bench.recipe import Recipe, RecipeError, validate_recipe

BASE = yaml.safe_load(QUICKSTART.read_text())
BASE["source"]["train_file"] = str(REPO / "data" / "hotpotqa" / "train.jsonl")
BASE["source"]["test_file"] = str(REPO / "data" / "hotpotqa" / "dev.jsonl")
RUNNER = CliRunner()
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = sorted(_paths(BASE)) + [("corpus", "top_k"), ("eval", "judge", "enabled"), ("teacher", "concurrency"),
                                 ("train", "lora", "r"), ("dataset", "filter")]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["f1>=2", "acc", "openai", "${env:NOPE_X}", "-1", "1e400", "tiny"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), SCALARS, max_size=2))


# Edits that keep the quickstart valid (each on its own field): a recipe changed only by these
# must validate. Values inside each field's documented range.
VALID_EDITS = [
    (("corpus", "top_k"), st.integers(1, 100)),
    (("framework", "max_steps"), st.integers(1, 20)),
    (("framework", "max_new_tokens"), st.integers(1, 4096)),
    (("train", "learning_rate"), st.floats(1e-7, 1.0)),
    (("train", "logging_steps"), st.integers(1, 10**6)),
    (("source", "test_limit"), st.one_of(st.none(), st.integers(1, 10**6))),
    (("dataset", "filter"), st.sampled_from(["acc", "em", "all", "f1>=0.5", "f1>=1"])),
    (("eval", "include_teacher"), st.booleans()),
    (("teacher", "temperature"), st.floats(0.0, 2.0)),
    (("description",), st.text(max_size=20)),
    (("our_choices", "note"), st.text(max_size=20)),
]


@st.composite
def bad_recipes(draw) -> tuple[str, bool, bool]:
    """The quickstart, changed in 1-3 ways, as YAML text (sometimes broken YAML); whether the YAML
    text was left intact, and whether every change was one of VALID_EDITS."""
    d = copy.deepcopy(BASE)
    only_valid = True
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "unknown", "delete", "replace-section", "valid"]))
        path = draw(st.sampled_from(PATHS))
        if kind == "valid":
            path, values = draw(st.sampled_from(VALID_EDITS))
        only_valid = only_valid and kind == "valid"
        node = d
        for k in path[:-1]:
            node = node.setdefault(k, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            continue
        if kind == "valid":
            node[path[-1]] = draw(values)
        elif kind == "set":
            node[path[-1]] = draw(VALUES)
        elif kind == "unknown":
            node[draw(st.text(min_size=1, max_size=10))] = draw(SCALARS)
        elif kind == "delete":
            node.pop(path[-1], None)
        else:
            d[path[0]] = draw(VALUES)
    text = yaml.safe_dump(d, allow_unicode=True)
    if draw(st.booleans()) and draw(st.booleans()):  # a quarter: break the YAML text itself
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from([":", "- ", "\t", "{", "[x", "'", '"', "\n  bad: [", "&a *b", "%YAML", "\x00"]))
        return text[:at] + junk + text[at:], False, False
    return text, True, only_valid


# -- the oracle: what may validate -------------------------------------------------------------------
# Independent of the recipe's validators: pydantic's documented lax-mode rules applied to the
# schema's field types. Each rule only says "must fail"; a recipe no rule flags either validates
# or fails for a reason the oracle does not model (a registry name, a range, a cross-field rule),
# except that a recipe changed only by VALID_EDITS must validate.

BOOL_WORDS = {"0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"}


def _number(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _scalar_refused(v, ann) -> bool:
    """True where pydantic (lax mode) surely refuses `v` for a field typed `ann`."""
    if isinstance(v, (list, dict)):
        return ann in (int, float, bool, str) or get_origin(ann) is Literal
    if get_origin(ann) is Literal:
        return v is None and None not in get_args(ann) or isinstance(v, str) and v not in get_args(ann)
    if v is None:
        return ann in (int, float, bool, str)
    if ann is str:
        return not isinstance(v, str)
    n = _number(v)
    if ann is int:
        return n is None or not math.isfinite(n) or n != int(n) or isinstance(v, str) and not v.strip()
    if ann is float:
        return n is None and not (isinstance(v, str) and v.strip().lower() in ("nan", "inf", "-inf", "infinity"))
    if ann is bool:
        return (str(v).strip().lower() not in BOOL_WORDS) if isinstance(v, str) else n not in (0.0, 1.0)
    return False


def must_fail(data, model=Recipe, path=()) -> list[tuple]:
    """The paths of `data` (a dict validated as `model`) that make it surely invalid."""
    bad = [path + (name,) for name, f in model.model_fields.items() if f.is_required() and name not in data]
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            bad.append(path + (str(key),))  # unknown key: every section forbids extras
            continue
        ann, where = field.annotation, path + (key,)
        args = [a for a in get_args(ann) if a is not type(None)]
        optional = get_origin(ann) in (Union, UnionType) and len(args) < len(get_args(ann))
        if optional and value is None:
            continue
        ann = args[0] if optional and len(args) == 1 else ann
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            bad += must_fail(value, ann, where) if isinstance(value, dict) else [where]
        elif get_origin(ann) is dict:  # our_choices: dict[str, str]
            if not isinstance(value, dict):
                bad.append(where)
            else:
                bad += [where + (str(k),) for k, v in value.items() if not isinstance(k, str) or _scalar_refused(v, str)]
        elif _scalar_refused(value, ann):
            bad.append(where)
    return bad


def test_the_oracle_flags_what_it_should():
    # the oracle itself, on hand-made cases (a wrong oracle would make the fuzz pass vacuously)
    assert must_fail(BASE) == []
    cases = {("corpus", "top_k"): "four", ("corpus", "nope"): 1, ("train", "packing"): "maybe",
             ("framework", "query"): "other", ("eval", "include_teacher"): [1], ("train", "max_steps"): 1.5,
             ("our_choices", "x"): 3, ("teacher", "model"): 7, ("source", "train_limit"): "x"}
    for (section, key), value in cases.items():
        d = copy.deepcopy(BASE)
        d.setdefault(section, {})[key] = value
        assert must_fail(d) == [(section, key)], (section, key, value)
    assert must_fail({k: v for k, v in BASE.items() if k != "source"}) == [("source",)]
    assert must_fail({**BASE, "corpus": 3}) == [("corpus",)]
    for value in ("5", 5.0, True, None):  # lax-mode coercions that validate
        assert must_fail({**BASE, "source": {**BASE["source"], "test_limit": value}}) == []


@st.composite
def valid_recipes(draw) -> str:
    d = copy.deepcopy(BASE)
    for path, values in draw(st.lists(st.sampled_from(VALID_EDITS), min_size=1, max_size=4)):
        node = d
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = draw(values)
    return yaml.safe_dump(d, allow_unicode=True)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(text=valid_recipes())
def test_valid_edits_validate(text):
    """The other side of the oracle: values inside each field's documented range validate."""
    data = yaml.safe_load(text)
    assert must_fail(data) == []
    validate_recipe(data)


def _wrong_value(ann):
    """A value of the wrong type for a scalar field (None: not a scalar field)."""
    args = [a for a in get_args(ann) if a is not type(None)]
    ann = args[0] if get_origin(ann) in (Union, UnionType) and len(args) == 1 else ann
    if ann in (int, float, bool):
        return "not-a-number"
    if ann is str:
        return [1]
    if get_origin(ann) is Literal:
        return "no-such-choice"
    return None


def _get(d, path):
    for k in path:
        d = d[k]
    return d


def _scalar_fields(model=Recipe, path=()):
    for name, f in model.model_fields.items():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            yield from _scalar_fields(f.annotation, path + (name,))
        elif _wrong_value(f.annotation) is not None:
            yield path + (name,), _wrong_value(f.annotation)


def test_every_scalar_field_refuses_a_wrong_type():
    """A sweep over the schema: each scalar field, set to a value of the wrong type, is refused
    (the oracle agrees) with an error naming that field."""
    fields = list(_scalar_fields())
    # every scalar the shipped quickstart sets is swept (a field retyped to take anything drops out)
    leaves = {p for p in _paths(BASE) if not isinstance(_get(BASE, p), (dict, list))} - {("our_choices",)}
    assert leaves - {p for p, _ in fields} == {p for p in leaves if p[0] == "our_choices"}
    assert len(fields) > 60
    for path, value in fields:
        d = copy.deepcopy(BASE)
        node = d
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
        assert must_fail(d) == [path], path
        with pytest.raises(RecipeError, match=re.escape(".".join(path))):
            validate_recipe(d)


def _flat(text) -> str:
    return re.sub(r"\s+", " ", str(text))  # the console wraps long lines


def _check(result, what, where: tuple[str, ...], expect: str = "either", fields: list[tuple] = ()) -> None:
    """A clear error (exit 2, `error:` naming the file or the --set, `where`) or a valid recipe
    (exit 0), never a traceback; `expect` (fail / pass) from the oracle, and a failure names a
    flagged field."""
    out = result.output + (getattr(result, "stderr", "") or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), (what, repr(result.exception), out)
    assert result.exit_code in (0, 2), (what, result.exit_code, out)
    assert "Traceback" not in out, out
    if result.exit_code == 2:
        assert "error:" in out and any(w in out for w in where) and len(out.strip()) < 5000, out
        assert expect != "pass", ("a recipe changed only by valid edits was refused", what, out)
        assert not fields or any(_flat(f[-1]).strip() in _flat(out) for f in fields), (fields, out)
    else:
        assert "ok" in out
        assert expect != "fail", ("validated although the oracle says invalid", fields, what)


@SETTINGS
@given(case=bad_recipes())
def test_fuzzed_recipe_files_give_a_clear_error(case):
    text, intact, only_valid = case
    fields = must_fail(yaml.safe_load(text)) if intact else []
    expect = "fail" if fields else "pass" if only_valid else "either"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        result = RUNNER.invoke(app, ["validate", str(path)])
    _check(result, text, ("recipe.yaml",), expect, fields)
    figure("recipe fuzz (validate, in process)", faults=1, completed=int(result.exit_code in (0, 2)))


@SETTINGS
@given(items=st.lists(st.tuples(st.sampled_from([".".join(p) for p in PATHS] + ["nope.x", "", ".", "a..b"]),
                                st.text(max_size=15)), min_size=1, max_size=3))
def test_fuzzed_set_overrides_give_a_clear_error(items):
    args = ["validate", str(QUICKSTART)]
    for key, value in items:
        args += ["--set", f"{key}={value}" if key else value]
    result = RUNNER.invoke(app, args)
    _check(result, args, ("quickstart.yaml", "--set"))
    figure("--set fuzz (validate, in process)", faults=1, completed=int(result.exit_code in (0, 2)))


def test_bad_recipes_through_the_real_cli(tmp_path):
    """A few cases as subprocesses, as a user meets them: message names file, line and field."""
    cases = {
        "syntax": ("source:\n  dataset: hotpotqa\n  train_file: [x\n", [r"YAML syntax error"]),
        "type": (yaml.safe_dump({**BASE, "corpus": {"top_k": "four"}}), ["corpus.top_k"]),
        "unknown": (yaml.safe_dump({**BASE, "trian": {"max_steps": 3}}), ["trian", "did you mean 'train'"]),
        "missing": (yaml.safe_dump({k: v for k, v in BASE.items() if k != "source"}), ["source", "missing"]),
        "not-a-mapping": ("- just\n- a list\n", ["mapping of sections"]),
        "binary": (None, ["cannot read the recipe"]),
    }
    for name, (text, needles) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(b"\xff\xfe\x00bad" if text is None else text.encode())
        for cmd in ([["validate"], ["build", "--dry-run"], ["run"]] if name in ("type", "unknown") else [["validate"]]):
            p = subprocess.run([*CLI, *cmd, str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert p.returncode == 2, (name, cmd, p.stderr)
            assert "Traceback" not in p.stderr + p.stdout and str(path.name) in p.stderr, p.stderr
            for needle in needles:
                assert needle in p.stderr, (name, needle, p.stderr)
            figure("bad recipe through the real CLI (subprocess)", faults=1, completed=1)
        assert not (tmp_path / "runs").exists()

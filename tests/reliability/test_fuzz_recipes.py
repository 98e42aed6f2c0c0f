"""Bad recipes: wrong types, unknown keys, missing sections, YAML syntax errors, bad --set. Every
case is a clear `error:` line and exit code 2 (or a valid recipe, exit 0), never a traceback.
Hypothesis drives `steper-bench validate` in process (typer's CliRunner); a few run as real
subprocesses."""

from __future__ import annotations

import copy
import subprocess
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.reliability import CLI, QUICKSTART, REPO, figure
from typer.testing import CliRunner

from steper_bench.cli import app

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


@st.composite
def bad_recipes(draw) -> str:
    """The quickstart, changed in 1-3 ways, as YAML text (sometimes broken YAML)."""
    d = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "unknown", "delete", "replace-section"]))
        path = draw(st.sampled_from(PATHS))
        node = d
        for k in path[:-1]:
            node = node.setdefault(k, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            continue
        if kind == "set":
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
        text = text[:at] + junk + text[at:]
    return text


def _check(result, what: str) -> None:
    out = result.output + (getattr(result, "stderr", "") or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), (what, repr(result.exception), out)
    assert result.exit_code in (0, 2), (what, result.exit_code, out)
    assert "Traceback" not in out, out
    if result.exit_code == 2:
        assert "error:" in out and len(out.strip()) < 5000, out
    else:
        assert "ok" in out


@SETTINGS
@given(text=bad_recipes())
def test_fuzzed_recipe_files_give_a_clear_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        result = RUNNER.invoke(app, ["validate", str(path)])
    _check(result, text)
    figure("recipe fuzz (validate, in process)", faults=1, completed=int(result.exit_code in (0, 2)))


@SETTINGS
@given(items=st.lists(st.tuples(st.sampled_from([".".join(p) for p in PATHS] + ["nope.x", "", ".", "a..b"]),
                                st.text(max_size=15)), min_size=1, max_size=3))
def test_fuzzed_set_overrides_give_a_clear_error(items):
    args = ["validate", str(QUICKSTART)]
    for key, value in items:
        args += ["--set", f"{key}={value}" if key else value]
    result = RUNNER.invoke(app, args)
    _check(result, args)
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

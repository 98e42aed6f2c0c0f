"""Bad dataset files: truncated lines, missing fields, wrong types, empty contexts, non-UTF-8
bytes, broken JSON arrays. Every bad record is a counted skip with its line and reason (or, with
--strict, a SourceError naming file and line); no good record is lost; nothing raises a
traceback, neither at load time nor through a real build of what survives."""

from __future__ import annotations

import copy
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.reliability import QUICKSTART, REPO, figure
from typer.testing import CliRunner

from steper_bench.cli import app
from steper_bench.sources import SourceError, load_file

GOOD = [json.loads(line) for line in (REPO / "data" / "hotpotqa" / "train.jsonl").read_text().splitlines()[:12]]
FIELDS = ["_id", "question", "answer", "supporting_facts", "context", "type"]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
                 st.lists(st.one_of(st.integers(), st.text(max_size=4), st.none()), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@st.composite
def bad_record(draw) -> bytes:
    """One JSONL line made from a real record, broken in one or two ways (or left intact)."""
    raw = copy.deepcopy(draw(st.sampled_from(GOOD)))
    raw["_id"] = f"fuzz-{draw(st.integers(0, 10**9))}"
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["drop", "type", "empty-context", "bad-context", "bad-sf", "empty-q",
                                     "truncate", "bytes", "not-object", "keep"]))
        if kind == "drop":
            raw.pop(draw(st.sampled_from(FIELDS)), None)
        elif kind == "type":
            raw[draw(st.sampled_from(FIELDS))] = draw(JUNK)
        elif kind == "empty-context":
            raw["context"] = []
        elif kind == "bad-context" and isinstance(raw.get("context"), list) and raw["context"]:
            i = draw(st.integers(0, len(raw["context"]) - 1))
            raw["context"][i] = draw(st.one_of(JUNK, st.just([1, ["s"]]), st.just(["t", "not a list"]),
                                               st.just(["t", []]), st.just(["t", [""]])))
        elif kind == "bad-sf":
            raw["supporting_facts"] = draw(st.one_of(JUNK, st.just([["nowhere", 99]]), st.just([["t", True]])))
        elif kind == "empty-q":
            raw["question"] = draw(st.sampled_from(["", "   ", "\n"]))
        elif kind in ("truncate", "bytes", "not-object"):
            line = json.dumps(raw, ensure_ascii=False).encode()
            if kind == "truncate":
                return line[: draw(st.integers(0, len(line) - 1))]
            if kind == "bytes":
                at = draw(st.integers(0, len(line)))
                return line[:at] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80\x80"])) + line[at:]
            return json.dumps(draw(JUNK)).encode()
    return json.dumps(raw, ensure_ascii=False).encode()


@dataclass
class Case:
    """A JSONL file of good records and fuzzed lines, and what the loader must find in it."""

    data: bytes
    good: dict[int, str]  # line number (1-based, counted in b"\n") -> id of an intact record
    fuzzed: set[int]  # line numbers of the fuzzed lines (each may still be a valid record)
    records: list[bytes]  # every non-blank line, in file order


@st.composite
def files(draw) -> Case:
    """Good records and fuzzed lines in random order, LF or CRLF endings, some blank lines."""
    good = draw(st.lists(st.sampled_from(GOOD), min_size=1, max_size=4, unique_by=lambda r: r["_id"]))
    bad = draw(st.lists(bad_record(), min_size=1, max_size=6))
    items = [(json.dumps(r).encode(), r["_id"]) for r in good] + [(b, None) for b in bad]
    items = [items[i] for i in draw(st.permutations(range(len(items))))]
    sep = draw(st.sampled_from([b"\n", b"\r\n"]))
    lines: list[bytes] = []
    case = Case(b"", {}, set(), [])
    for body, rid in items:
        lines += [draw(st.sampled_from([b"", b"  ", b"\t"]))] * draw(st.integers(0, 1))  # blank lines
        lines.append(body)
        if not body.strip():  # a line truncated to nothing is a blank line, not a record
            continue
        case.records.append(body)
        if rid is None:
            case.fuzzed.add(len(lines))
        else:
            case.good[len(lines)] = rid
    case.data = sep.join(lines) + draw(st.sampled_from([b"", sep]))
    return case


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=files())
def test_fuzzed_records_are_counted_skips_and_no_good_record_is_lost(case):
    data = case.data
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.jsonl"
        path.write_bytes(data)
        try:
            result = load_file("hotpotqa", path, split="train", strict=False)
        except SourceError as e:
            # A file starting with "[" reads as a JSON array; a broken one is a clear error, not a loss.
            assert data.lstrip().startswith(b"[") and f"{path}:" in str(e), e
            figure("record fuzz (load_file, lenient + strict)", faults=1, completed=1)
            return
        ids = {q.id for q in result.questions}
        # Every record line is accounted for (blank lines are not records): a question or a skip,
        # and a skip names the line of a fuzzed record, never a good one nor a blank.
        assert len(result.questions) + len(result.skipped) == len(case.records)
        assert all(s.reason for s in result.skipped)
        assert {s.line for s in result.skipped} <= case.fuzzed, (sorted(s.line for s in result.skipped), case)
        assert len({s.line for s in result.skipped}) == len(result.skipped)
        lost = [rid for rid in case.good.values() if rid not in ids]
        assert not lost
        assert all(q.question.strip() and q.paragraphs and isinstance(q.answers[0], str) for q in result.questions)
        if result.skipped:
            first = min(s.line for s in result.skipped)
            with pytest.raises(SourceError, match=rf"{re.escape(str(path))}:{first}: record "):
                load_file("hotpotqa", path, split="train", strict=True)
    figure("record fuzz (load_file, lenient + strict)", faults=len(result.skipped), completed=1, lost=len(lost))


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=files(), sep=st.sampled_from([b"\n", b"\r\n"]), whole_lines_only=st.booleans())
def test_fuzzed_json_array_files_load_or_say_where(case, sep, whole_lines_only):
    """The JSON-array form: a broken array cannot be resynced, so it is a SourceError with a line;
    an array that parses loses nothing (the oracle: the standard library's own JSON parser).
    Half the arrays keep only the lines that are JSON values, so that most of those parse."""
    records = [r for r in case.records if not whole_lines_only or _is_json(r)]
    array = b"[" + sep + (b"," + sep).join(records) + sep + b"]"
    try:
        elements = json.loads(array.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        elements = None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.json"
        path.write_bytes(array)
        try:
            result = load_file("hotpotqa", path, split="train", strict=False)
        except SourceError as e:
            assert elements is None, f"a valid array was refused: {e}"
            assert f"{path}:" in str(e) and ("JSON" in str(e) or "UTF-8" in str(e)), e
            figure("record fuzz (JSON array form)", faults=1, completed=1)
            return
    assert elements is not None, "an array the JSON parser refuses was loaded"
    # nothing lost: each element is a question or a skip, and every intact record is a question
    assert len(result.questions) + len(result.skipped) == len(elements)
    ids = {q.id for q in result.questions}
    lost = [rid for rid in case.good.values() if rid not in ids]
    assert not lost
    figure("record fuzz (JSON array form)", faults=len(result.skipped), completed=1, lost=len(lost))


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=files())
def test_build_over_fuzzed_files_completes_and_counts_skips(case, tmp_path_factory):
    """What survives loading goes through a real build (CLI in process); skips are counted in
    the build summary."""
    data, n_good = case.data, len(case.good)
    d = tmp_path_factory.mktemp("fuzzbuild")
    (d / "train.jsonl").write_bytes(data)
    (d / "test.jsonl").write_bytes(data)
    result = CliRunner().invoke(app, ["build", str(QUICKSTART), "--quiet", "--set", f"runs_dir={d / 'runs'}",
                                      "--set", f"source.train_file={d / 'train.jsonl'}",
                                      "--set", f"source.test_file={d / 'test.jsonl'}", "--set", "dataset.filter=all"])
    out = result.output + (getattr(result, "stderr", "") or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), (repr(result.exception), out)
    assert result.exit_code == 0 and "Traceback" not in out, out
    summary = json.loads(next((d / "runs").glob("*/dataset/build_summary.json")).read_text())
    train = summary["splits"]["train"]
    assert train["questions"] >= n_good and train["skipped_records"] >= 1
    assert train["kept"] + sum(train["dropped"].values()) == train["questions"]
    figure("record fuzz (real build, CLI in process)", faults=train["skipped_records"], completed=1)

"""Answer metrics: EM/F1 equal the official HotpotQA script's values, Acc, extraction, filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steper_bench import metrics
from steper_bench.metrics import acc, exact_match, extract_answer, f1_score, normalize_answer, passes_filter

REPO_ROOT = Path(__file__).resolve().parents[2]

OFFICIAL = json.loads((REPO_ROOT / "tests/fixtures/hotpot_official/predictions.json").read_text())


def test_fixture_covers_the_cases_that_matter():
    kinds = {c["kind"] for c in OFFICIAL}
    assert len(OFFICIAL) >= 60
    assert {"exact", "partial-first-token", "wrong", "empty", "yes-vs-no", "noanswer-pred", "musique-aliases"} <= kinds
    # Both outcomes of each metric appear, and F1 strictly between 0 and 1 too.
    assert {c["em"] for c in OFFICIAL} == {0.0, 1.0}
    assert any(0 < c["f1"] < 1 for c in OFFICIAL)


@pytest.mark.parametrize("case", OFFICIAL, ids=[f"{i}-{c['kind']}" for i, c in enumerate(OFFICIAL)])
def test_em_f1_equal_official_script(case):
    assert exact_match(case["prediction"], case["golds"]) == case["em"]
    assert f1_score(case["prediction"], case["golds"]) == pytest.approx(case["f1"], abs=1e-12)


def test_normalize_answer():
    assert normalize_answer("  The  Quick, brown FOX!  ") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_yes_no_special_case_in_f1():
    # "yes" shares the token with "yes they are", but the official F1 gives 0.
    assert f1_score("yes they are", "yes") == 0.0
    assert f1_score("Yes.", "yes") == 1.0
    # A generic word overlap still counts.
    assert f1_score("New York City", "New York") == pytest.approx(0.8)


def test_max_over_golds():
    golds = ["Pittsburgh Pirates", "Pirates", "Mets"]
    assert exact_match("the Mets", golds) == 1.0
    assert f1_score("Pittsburgh", golds) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="^no gold answers to score against$"):
        exact_match("x", [])


@pytest.mark.parametrize(
    "pred, golds, expected",
    [
        ("He was born in Paris, France.", ["Paris"], 1.0),  # contained after normalisation
        ("The answer is THE BEATLES!", ["Beatles"], 1.0),
        ("Paris", ["Paris, France"], 0.0),  # the gold must be inside the prediction, not reverse
        ("north", ["no"], 0.0),  # whole tokens only: "no" is not in "north"
        ("no, they were not", ["no"], 1.0),
        ("Pirates of Pittsburgh", ["Pittsburgh Pirates", "Pirates"], 1.0),  # any gold
        ("", ["Paris"], 0.0),
        ("anything", [""], 0.0),  # an empty gold is never "contained"
    ],
)
def test_acc(pred, golds, expected):
    assert acc(pred, golds) == expected


def test_score_dict_and_none_prediction():
    assert metrics.score("The Beatles", ["beatles"]) == {"em": 1.0, "f1": 1.0, "acc": 1.0}
    assert metrics.score(None, ["x"]) == {"em": 0.0, "f1": 0.0, "acc": 0.0}
    # no prediction is an empty one: it matches nothing but an empty gold (em, as HotpotQA's script)
    assert metrics.score(None, ["xxxx"]) == {"em": 0.0, "f1": 0.0, "acc": 0.0}
    assert metrics.score(None, [""]) == {"em": 1.0, "f1": 0.0, "acc": 0.0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Ed Wood was American. So the answer is: yes.", "yes"),
        ("so THE ANSWER IS: Chief of Protocol.", "Chief of Protocol"),
        ('Thus the answer is "Ed Wood".', "Ed Wood"),
        ("The answer is 3.5.", "3.5"),
        ("First the answer is: A. Later, so the answer is: B.", "B"),  # last occurrence
        ("So the answer is: Paris\nQuestion: next one", "Paris"),  # stops at the line end
        ("So the answer is:   ", None),
        ('So the answer is: "Paris."', "Paris"),  # quotes, then the full stop inside them
        ("So the answer is: XXL.", "XXL"),  # letters at either end are the answer's own
        ("So the answer is: Malcolm X.", "Malcolm X"),
        ("So the answer is: 'Malcolm X'.", "Malcolm X"),
        ("I do not know.", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "scores, spec, expected",
    [
        ({"em": 0.0, "f1": 0.5, "acc": 1.0}, "acc", True),
        ({"em": 0.0, "f1": 0.5, "acc": 0.0}, "acc", False),
        ({"em": 1.0, "f1": 1.0, "acc": 1.0}, "em", True),
        ({"em": 0.0, "f1": 0.9, "acc": 1.0}, "em", False),
        ({"em": 0.0, "f1": 0.0, "acc": 0.0}, "all", True),
        ({"em": 0.0, "f1": 0.8, "acc": 0.0}, "f1>=0.8", True),
        ({"em": 0.0, "f1": 0.79, "acc": 1.0}, "f1>=0.8", False),
        ({"em": 1.0, "f1": 1.0, "acc": 1.0}, "f1>=1", True),
    ],
)
def test_passes_filter(scores, spec, expected):
    assert passes_filter(scores, spec) is expected


def test_unknown_filter_is_an_error():
    with pytest.raises(ValueError, match="allowed: acc, em, all, or f1>=x"):
        passes_filter({"em": 1.0, "f1": 1.0, "acc": 1.0}, "f1>0.5")

"""Per-dataset official metric rules: MuSiQue's own answer F1 (values computed by hand from
MuSiQue's metrics/answer.py rule), noanswer apart from a wrong answer, and support recall matched
by title and text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from steper_bench import metrics
from steper_bench.build import drop_reason
from steper_bench.evaluation.trace import paragraph_rows, sp_recall
from steper_bench.records import GeneratorIdentity, Paragraph, Question, Step, Trajectory

REPO = Path(__file__).resolve().parents[2]


def golds(file: str, qid: str) -> list[str]:
    for line in (REPO / "data" / "musique" / file).open(encoding="utf-8"):
        r = json.loads(line)
        if r["id"] == qid:
            return [r["answer"], *r["answer_aliases"]]  # MuSiQue's evaluate_v1.0.py: answer + aliases
    raise KeyError(qid)


# MuSiQue's rule: normalise (lower, drop punctuation, drop a/an/the, collapse spaces); EM = equal;
# F1 over tokens (no yes/no rule; either side empty -> 1 if both are, else 0); max over golds.
# Each expected value below was worked out by hand; the arithmetic is in the comment.
PIRATES = (
    "dev.jsonl",
    "2hop__335418_279684",
)  # Pittsburgh Pirates | Orioles, Pirates, Baltimore Orioles, New York Mets, Mets
MUSIQUE_CASES = [
    (PIRATES, "Pittsburgh Pirates", 1, 1.0),
    (PIRATES, "the Pirates of Pittsburgh", 0, 0.8),  # 'pirates of pittsburgh' vs 'pittsburgh pirates': P 2/3, R 1
    (PIRATES, "Baltimore", 0, 2 / 3),  # vs 'baltimore orioles': P 1, R 1/2
    (PIRATES, "New York", 0, 0.8),  # vs 'new york mets': P 1, R 2/3
    (PIRATES, "Mets Mets", 0, 2 / 3),  # vs 'mets': common min(2, 1) = 1, P 1/2, R 1
    (PIRATES, "", 0, 0.0),  # no prediction token, golds have tokens: 0
    (PIRATES, "The.", 0, 0.0),  # normalises to nothing: as empty
    (("dev.jsonl", "2hop__496732_658428"), "Panglao", 0, 2 / 3),  # vs 'panglao island': P 1, R 1/2
    (("dev.jsonl", "2hop__496732_658428"), "island of Panglao", 0, 0.8),  # P 2/3, R 1
    (("dev.jsonl", "2hop__29367_29376"), "his death in 1939", 0, 0.75),  # gold 'lyons death in 1939': 3 of 4 each way
    (
        ("dev.jsonl", "2hop__29367_29376"),
        "Lyons\u2019 death in 1939",
        0,
        0.75,
    ),  # a curly quote is not ASCII punctuation
    (
        ("dev.jsonl", "2hop__57209_67668"),
        "Dick Grayson (Nightwing)",
        0,
        1.0,
    ),  # same 3 tokens as 'nightwing dick grayson'
    (("dev.jsonl", "2hop__57209_67668"), "Robin", 1, 1.0),  # an alias
    (("dev.jsonl", "2hop__810411_159673"), "Hateful 8", 0, 0.5),  # vs 'hateful eight': P 1/2, R 1/2
    (("dev.jsonl", "2hop__810411_159673"), "The The Hateful Eight", 1, 1.0),  # every 'the' goes
    # Golds Norway | NO, NOR, no: the golds 'no' normalise to HotpotQA's special 'no'.
    (("train.jsonl", "2hop__468258_495107"), "no idea", 0, 2 / 3),  # vs 'no': P 1/2, R 1 (HotpotQA's rule: 0)
    (("train.jsonl", "2hop__468258_495107"), "No.", 1, 1.0),
    (("train.jsonl", "2hop__468258_495107"), "Norwegian", 0, 0.0),
]


@pytest.mark.parametrize("where, pred, em, f1", MUSIQUE_CASES, ids=[f"{c[0][1]}-{c[1]}" for c in MUSIQUE_CASES])
def test_musique_rule_on_the_shipped_sample(where, pred, em, f1):
    g = golds(*where)
    assert metrics.exact_match(pred, g, "musique") == em
    assert metrics.f1_score(pred, g, "musique") == pytest.approx(f1, abs=1e-12)


def test_rules_differ_only_where_the_official_scripts_do():
    norway = golds("train.jsonl", "2hop__468258_495107")
    assert metrics.f1_score("no idea", norway, "hotpotqa") == 0.0  # HotpotQA: 'no' is special
    assert metrics.f1_score("no idea", norway, "musique") == pytest.approx(2 / 3)
    assert metrics.f1_score("yes", "yes they are", "musique") == pytest.approx(0.5)
    assert metrics.f1_score("", "", "musique") == 1.0 and metrics.f1_score("", "", "hotpotqa") == 0.0
    assert metrics.rule_for("musique") == "musique" and metrics.rule_for("hotpotqa") == "hotpotqa"
    assert metrics.rule_for("2wikimultihopqa") == "2wikimultihopqa" and metrics.rule_for("unregistered") == "hotpotqa"
    with pytest.raises(ValueError, match="unknown metric rule"):
        metrics.f1_score("a", "a", "squad")


def test_noanswer_is_not_an_ordinary_wrong_answer():
    # HotpotQA's rule: a 'noanswer' prediction earns no partial credit where a word would.
    assert metrics.f1_score("noanswer", "noanswer given", "hotpotqa") == 0.0
    assert metrics.f1_score("given", "noanswer given", "hotpotqa") == pytest.approx(2 / 3)
    assert metrics.f1_score("noanswer", "noanswer given", "musique") == pytest.approx(2 / 3)  # MuSiQue: a word
    assert metrics.extract_answer("I found nothing. So the answer is: noanswer.") == "noanswer"

    def traj(prediction: str) -> Trajectory:
        step = Step(1, "q", [], [], [], "h", f"So the answer is: {prediction}.")
        s = metrics.score(prediction, ["Paris"])
        return Trajectory(
            "q1",
            "hotpotqa",
            "train",
            "q?",
            ["Paris"],
            GeneratorIdentity("x", "m"),
            [step],
            {},
            prediction,
            "answered",
            **s,
        )

    assert drop_reason(traj("noanswer"), "acc") == "no answer"
    assert drop_reason(traj("No answer."), "acc") == "wrong answer"  # two words: a (wrong) answer
    assert drop_reason(traj("London"), "acc") == "wrong answer"
    assert drop_reason(traj(""), "acc") == "no answer"
    assert drop_reason(traj("Paris"), "acc") is None


def test_sp_recall_matches_title_and_text_not_title_alone():
    gold = Paragraph("q-0", "Ed Wood", "Edward Davis Wood Jr. was an American filmmaker.", True)
    other = Paragraph("q-1", "Scott Derrickson", "Scott Derrickson is an American director.", True)
    q = Question("q", "hotpotqa", "Same nationality?", ["yes"], [gold, other])
    # The dump's copy: its own id and sentences joined with a space where the context had none.
    dump_copy = Paragraph("4242", "Ed Wood", "Edward Davis Wood Jr.  was an American filmmaker.")
    same_title = Paragraph("4243", "Scott Derrickson", "Scott Derrickson (born 1966) directs horror films.")
    seen = {p.pid: p for p in (dump_copy, same_title)}
    t = Trajectory(
        "q", "hotpotqa", "test", q.question, q.answers, GeneratorIdentity("x", "m"), [], seen, "", "max_steps"
    )
    assert sp_recall(q, t, ["4242"]) == 0.5
    assert sp_recall(q, t, ["4242", "4243"]) == 0.5  # a title match with other text is not the gold paragraph
    assert [r["is_supporting"] for r in paragraph_rows("run", q, t)] == [True, False]


def twowiki_golds(qid: str) -> list[str]:
    for line in (REPO / "data" / "2wikimultihopqa" / "dev.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        if r["_id"] == qid:
            return [r["answer"]]  # + aliases of r["answer_id"] when source.aliases_file is set
    raise KeyError(qid)


# 2WikiMultiHopQA's 2wikimultihop_evaluate_v1.1.py: HotpotQA's normalisation and F1 (yes / no /
# noanswer rule included), max over {answer} + aliases. Worked out by hand, arithmetic in comments.
TWOWIKI_CASES = [
    ("a488d6e2089211ebbd73ac1f6bf848b6", "Majhli Didi", 1, 1.0),
    ("a488d6e2089211ebbd73ac1f6bf848b6", "Didi", 0, 2 / 3),  # vs 'majhli didi': P 1, R 1/2
    ("9de793120bdc11eba7f7acde48001122", "December 1505", 0, 0.8),  # vs '25 december 1505': P 1, R 2/3
    ("9de793120bdc11eba7f7acde48001122", "25 December, 1505.", 1, 1.0),  # punctuation goes
    ("83f01c4208b511ebbd88ac1f6bf848b6", "No.", 1, 1.0),
    ("83f01c4208b511ebbd88ac1f6bf848b6", "no, they do not", 0, 0.0),  # gold 'no' is special: no partial credit
    ("e867c55a087711ebbd67ac1f6bf848b6", "no", 0, 0.0),
    ("e867c55a087711ebbd67ac1f6bf848b6", "yes they do", 0, 0.0),  # MuSiQue's rule would give 0.5
]


@pytest.mark.parametrize("qid, pred, em, f1", TWOWIKI_CASES, ids=[f"{c[0][:8]}-{c[1]}" for c in TWOWIKI_CASES])
def test_2wiki_rule_on_the_shipped_sample(qid, pred, em, f1):
    g = twowiki_golds(qid)
    assert metrics.exact_match(pred, g, "2wikimultihopqa") == em
    assert metrics.f1_score(pred, g, "2wikimultihopqa") == pytest.approx(f1, abs=1e-12)

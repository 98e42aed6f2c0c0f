"""Test sets: IRCoT's sampling against a hand-computed selection, test_ids files, 2Wiki aliases."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from steper_bench import metrics
from steper_bench.recipe import validate_recipe
from steper_bench.sources import SourceError, load_questions

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"


def synthetic_dev(path: Path, n: int) -> list[str]:
    """n HotpotQA records (copies of one sample record) with ids d0000, d0001, ... in file order."""
    base = json.loads((DATA / "hotpotqa" / "dev.jsonl").open().readline())
    ids = [f"d{i:04d}" for i in range(n)]
    path.write_text("".join(json.dumps({**base, "_id": i}) + "\n" for i in ids))
    return ids


def recipe(tmp_path: Path, **source):
    return validate_recipe({"source": {"dataset": "hotpotqa", "test_file": str(tmp_path / "dev.jsonl"), **source}})


def test_ircot_sampling_equals_ircots_procedure(tmp_path):
    ids = synthetic_dev(tmp_path / "dev.jsonl", 700)
    got = [q.id for q in load_questions(recipe(tmp_path, sampling="ircot"), "test").questions]
    # IRCoT's subsample script, run twice (dev, then test), each a fresh process seeding the
    # module-level generator: random.seed(13370); random.sample(instances, k).
    random.seed(13370)
    dev = random.sample(ids, 100)
    random.seed(13370)
    expected = random.sample([i for i in ids if i not in set(dev)], 500)
    assert got == expected  # the same questions, in the order drawn
    assert not set(got) & set(dev) and len(set(got)) == 500
    # Written down once from the procedure above (Python's Mersenne Twister is stable across versions).
    assert dev[:3] == ["d0276", "d0581", "d0281"] and got[:3] == ["d0317", "d0673", "d0322"]
    assert got != sorted(got)  # not re-sorted into file order (our `seeded` sampling is)
    seeded = [q.id for q in load_questions(recipe(tmp_path), "test").questions]
    assert seeded == sorted(seeded) and len(seeded) == 500 and seeded != sorted(got)


def test_ircot_sampling_refuses_what_would_not_be_ircots_draw(tmp_path):
    synthetic_dev(tmp_path / "dev.jsonl", 550)
    with pytest.raises(SourceError, match=r"draws 100 dev \+ 500 test questions, but the dev file has 550"):
        load_questions(recipe(tmp_path, sampling="ircot"), "test")
    assert len(load_questions(recipe(tmp_path, sampling="ircot", test_limit=400), "test").questions) == 400
    lines = (tmp_path / "dev.jsonl").read_text().splitlines()
    lines[3] = '{"_id": "broken"}'
    (tmp_path / "dev.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"1 record\(s\) of .*dev.jsonl were skipped \(first: line 4"):
        load_questions(recipe(tmp_path, sampling="ircot", test_limit=400), "test")


def test_test_ids_select_exactly_those_in_that_order(tmp_path):
    ids = synthetic_dev(tmp_path / "dev.jsonl", 40)
    wanted = [ids[30], ids[2], ids[17]]
    (tmp_path / "ids.txt").write_text("\n".join(wanted) + "\n\n")
    got = load_questions(recipe(tmp_path, test_ids=str(tmp_path / "ids.txt"), test_limit=2), "test").questions
    assert [q.id for q in got] == wanted  # the file decides, not test_limit
    # IRCoT's processed files (question_id) and original records (_id) work as id files too.
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps({"question_id": i, "x": 1}) + "\n" for i in wanted[::-1]))
    got = load_questions(recipe(tmp_path, test_ids=str(tmp_path / "ids.jsonl")), "test").questions
    assert [q.id for q in got] == wanted[::-1]
    (tmp_path / "ids.txt").write_text("d0001\nnot-there\n")
    with pytest.raises(SourceError, match=r"1 of 2 ids in .*ids.txt are not in the test split \(first: not-there\)"):
        load_questions(recipe(tmp_path, test_ids=str(tmp_path / "ids.txt")), "test")
    with pytest.raises(Exception, match="remove source.sampling: ircot"):
        recipe(tmp_path, test_ids="ids.txt", sampling="ircot")


def test_2wiki_aliases_file_adds_gold_answers(tmp_path):
    # A file in id_aliases.json's layout (entries written for this test, not the release's).
    aliases = tmp_path / "id_aliases.json"
    aliases.write_text(
        json.dumps({"Q_id": "Q1415", "aliases": ["IN", "Hoosier State"], "demonyms": ["Hoosier"]})
        + "\n"
        + json.dumps({"Q_id": "Q9", "aliases": [], "demonyms": []})
        + "\n"
    )
    src = {"dataset": "2wikimultihopqa", "test_file": str(DATA / "2wikimultihopqa" / "dev.jsonl"), "test_limit": None}
    plain = load_questions(validate_recipe({"source": src}), "test").questions
    with_aliases = load_questions(validate_recipe({"source": {**src, "aliases_file": str(aliases)}}), "test").questions
    q = next(q for q in with_aliases if q.answer_id == "Q1415")
    assert q.answers == ["Indiana", "Hoosier", "Hoosier State", "IN"]
    assert [x.answers for x in with_aliases if x.id != q.id] == [x.answers for x in plain if x.id != q.id]
    # The official 2Wiki evaluation: max over {answer} + aliases + demonyms, HotpotQA's rules.
    rule = metrics.rule_for("2wikimultihopqa")
    assert metrics.score("Hoosier", q.answers, rule)["em"] == 1.0
    assert metrics.score("Hoosier", [q.answer], rule)["em"] == 0.0
    with pytest.raises(SourceError, match="only 2WikiMultiHopQA records carry answer_id"):
        load_questions(
            validate_recipe(
                {
                    "source": {
                        "dataset": "hotpotqa",
                        "test_file": str(DATA / "hotpotqa" / "dev.jsonl"),
                        "aliases_file": str(aliases),
                    }
                }
            ),
            "test",
        )

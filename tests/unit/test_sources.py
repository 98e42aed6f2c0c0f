"""Sources: the three datasets on the shipped samples, subsampling, malformed records, the Hub path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from steper_bench.recipe import validate_recipe
from steper_bench.sources import SourceError, dataset_names, get_spec, load_file, load_questions

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
COUNTS = {  # (train, dev) records in the shipped samples, see data/SOURCES.md
    "hotpotqa": (100, 50),
    "2wikimultihopqa": (50, 30),
    "musique": (50, 30),
}


def recipe_for(dataset: str, **source) -> object:
    src = {
        "dataset": dataset,
        "train_file": str(DATA / dataset / "train.jsonl"),
        "test_file": str(DATA / dataset / "dev.jsonl"),
        "test_limit": None,
        **source,
    }
    return validate_recipe({"source": src})


def raw_records(dataset: str, split_file: str = "dev.jsonl") -> list[dict]:
    return [json.loads(line) for line in (DATA / dataset / split_file).open(encoding="utf-8")]


def test_registry_has_the_three_datasets_and_hub_defaults():
    assert set(COUNTS) <= set(dataset_names())
    assert (get_spec("hotpotqa").hub_id, get_spec("hotpotqa").hub_config) == ("hotpotqa/hotpot_qa", "distractor")
    assert get_spec("musique").hub_id == "dgslibisey/MuSiQue"


@pytest.mark.parametrize("dataset", sorted(COUNTS))
def test_sample_counts_and_stable_ids(dataset):
    r = recipe_for(dataset)
    train, test = load_questions(r, "train"), load_questions(r, "test")
    assert (len(train.questions), len(test.questions)) == COUNTS[dataset]
    assert train.skipped == [] and test.skipped == []
    assert test.path_or_id == str(DATA / dataset / "dev.jsonl")
    assert test.revision.startswith("sha256:")
    again = load_questions(r, "test")
    assert [q.to_dict() for q in again.questions] == [q.to_dict() for q in test.questions]
    raw_ids = [str(x.get("_id", x.get("id"))) for x in raw_records(dataset)]
    assert [q.id for q in test.questions] == raw_ids  # file order kept
    for q in test.questions:
        assert q.dataset == dataset and q.split == "test" and q.type
        assert [p.pid for p in q.paragraphs] == [f"{q.id}-{i}" for i in range(len(q.paragraphs))]
        assert q.answers[0] and all(p.text for p in q.paragraphs)


@pytest.mark.parametrize("dataset", ["hotpotqa", "2wikimultihopqa"])
def test_supporting_flags_match_supporting_facts(dataset):
    questions = load_questions(recipe_for(dataset), "test").questions
    for q, raw in zip(questions, raw_records(dataset)):
        sf_titles = {t for t, _ in raw["supporting_facts"]}
        assert {p.title for p in q.paragraphs if p.is_supporting} == sf_titles
        assert q.supporting_facts == [tuple(x) for x in raw["supporting_facts"]]
        assert q.answers == [raw["answer"]]  # no aliases in these datasets


def test_hotpotqa_paragraphs_and_supporting_sentences_in_order():
    questions = load_questions(recipe_for("hotpotqa"), "test").questions
    for q, raw in zip(questions, raw_records("hotpotqa")):
        ctx = {t: s for t, s in raw["context"]}
        # Sentences carry their leading space: joined with "" they give back the paragraph.
        assert q.paragraphs[0].text == "".join(raw["context"][0][1]).strip()
        assert "  " not in q.paragraphs[0].text
        expected = [(t, ctx[t][i].strip()) for t, i in raw["supporting_facts"]]
        assert q.supporting_sentences == expected and expected
    first = questions[0]  # "Were Scott Derrickson and Ed Wood of the same nationality?"
    assert [t for t, _ in first.supporting_sentences] == ["Scott Derrickson", "Ed Wood"]
    assert first.supporting_sentences[0][1].startswith("Scott Derrickson (born July 16, 1966)")


def test_2wiki_joins_with_spaces_and_skips_off_by_one_facts():
    train = load_questions(recipe_for("2wikimultihopqa"), "train").questions
    q = next(q for q in train if q.id == "9784007e0bdb11eba7f7acde48001122")
    raw = next(r for r in raw_records("2wikimultihopqa", "train.jsonl") if r["_id"] == q.id)
    ctx = {t: s for t, s in raw["context"]}
    assert ("Edward Ludwig", 6) in q.supporting_facts and len(ctx["Edward Ludwig"]) == 6  # index past the end
    assert len(q.supporting_sentences) == len(q.supporting_facts) - 1
    para = next(p for p in q.paragraphs if p.title == "Edward Ludwig")
    assert para.text == " ".join(ctx["Edward Ludwig"])


def test_musique_answers_supporting_and_reasoning_order():
    questions = load_questions(recipe_for("musique"), "test").questions
    for q, raw in zip(questions, raw_records("musique")):
        assert q.answers[0] == raw["answer"] and set(q.answers[1:]) <= set(raw["answer_aliases"])
        assert [p.is_supporting for p in q.paragraphs] == [p["is_supporting"] for p in raw["paragraphs"]]
        steps = raw["question_decomposition"]
        assert [t for t, _ in q.supporting_sentences] == [raw["paragraphs"][s["paragraph_support_idx"]]["title"] for s in steps]
        assert len(q.supporting_facts) == len(steps)
        assert q.type == raw["id"].split("__")[0]
    first = questions[0]  # Anna Benson's husband -> Kris Benson -> Pittsburgh Pirates
    assert first.supporting_sentences[0][0] == "Anna Benson" and "Kris Benson" in first.supporting_sentences[0][1]
    assert "Pittsburgh Pirates" in first.supporting_sentences[1][1]


def test_seeded_subsample_is_deterministic_and_keeps_order():
    full = [q.id for q in load_questions(recipe_for("hotpotqa"), "train").questions]
    a = [q.id for q in load_questions(recipe_for("hotpotqa", train_limit=20), "train").questions]
    b = [q.id for q in load_questions(recipe_for("hotpotqa", train_limit=20), "train").questions]
    c = [q.id for q in load_questions(recipe_for("hotpotqa", train_limit=20, seed=1), "train").questions]
    assert a == b and len(a) == 20 and a != c
    assert a == [i for i in full if i in set(a)]  # file order
    # limit= overrides the recipe; a limit above the size keeps everything
    assert len(load_questions(recipe_for("hotpotqa"), "train", limit=7).questions) == 7
    assert len(load_questions(recipe_for("hotpotqa", test_limit=500), "test").questions) == 50


def test_subsample_is_the_ircot_choice():
    # IRCoT: random.seed(13370); random.sample(instances, n). We keep the same members, in file order.
    import random

    full = [q.id for q in load_questions(recipe_for("hotpotqa"), "train").questions]
    random.seed(13370)
    expected = set(random.sample(full, 30))
    got = [q.id for q in load_questions(recipe_for("hotpotqa", train_limit=30), "train").questions]
    assert set(got) == expected


# -- malformed records ---------------------------------------------------------------------------------


@pytest.fixture
def broken_file(tmp_path) -> Path:
    lines = (DATA / "hotpotqa" / "dev.jsonl").read_bytes().splitlines()[:6]
    missing = json.loads(lines[3])
    del missing["question"]
    empty = json.loads(lines[4])
    empty["context"] = []
    wrong = json.loads(lines[5])
    wrong["answer"] = 42
    out = [
        lines[0],
        lines[1][: len(lines[1]) // 2],  # truncated line (line 2)
        lines[2].replace(b"Laleli", b"Lal\xff\xfeeli", 1) if b"Laleli" in lines[2] else lines[2][:40] + b"\xff" + lines[2][40:],
        json.dumps(missing).encode(),  # line 4
        json.dumps(empty).encode(),  # line 5
        json.dumps(wrong).encode(),  # line 6
        lines[0],  # duplicate id, line 7
    ]
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def test_malformed_records_are_skipped_with_line_and_id(broken_file):
    r = validate_recipe({"source": {"dataset": "hotpotqa", "test_file": str(broken_file), "test_limit": None}})
    res = load_questions(r, "test")
    assert len(res.questions) == 1
    by_line = {s.line: s for s in res.skipped}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7]
    assert "invalid JSON" in by_line[2].reason and by_line[2].id is None
    assert "not valid UTF-8" in by_line[3].reason
    assert by_line[4].reason == "missing field 'question'" and by_line[4].id
    assert by_line[5].reason == "empty context"
    assert by_line[6].reason == "field 'answer' should be a string, got int"
    assert "duplicate id" in by_line[7].reason


def test_strict_mode_names_file_line_id_and_problem(broken_file):
    r = validate_recipe({"source": {"dataset": "hotpotqa", "test_file": str(broken_file), "strict": True}})
    with pytest.raises(SourceError) as e:
        load_questions(r, "test")
    assert f"{broken_file}:2: record (no id): invalid JSON" in str(e.value)
    assert "source.strict: false" in str(e.value)
    assert isinstance(e.value, ValueError)
    # strict= overrides the recipe, and the first error is the one reported
    lines = broken_file.read_bytes().splitlines()
    broken_file.write_bytes(b"\n".join([lines[0], lines[3]]))
    r = validate_recipe({"source": {"dataset": "hotpotqa", "test_file": str(broken_file)}})
    qid = json.loads(lines[3])["_id"]
    with pytest.raises(SourceError, match=rf"broken.jsonl:2: record {qid}: missing field 'question'"):
        load_questions(r, "test", strict=True)


def test_json_array_files_report_lines(tmp_path):
    records = raw_records("hotpotqa")[:3]
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(records, indent=1))
    res = load_file("hotpotqa", path)
    assert [q.id for q in res.questions] == [r["_id"] for r in records]
    records[1]["context"] = "not a list"
    text = json.dumps(records, indent=1)
    path.write_text(text)
    res = load_file("hotpotqa", path)
    second_line = text[: text.index(records[1]["_id"])].count("\n")  # the '{' is a line above the id
    assert [(s.line, s.id) for s in res.skipped] == [(second_line, records[1]["_id"])]
    path.write_text(text[: len(text) // 2])
    with pytest.raises(SourceError, match=r"dev.json:\d+: invalid JSON"):
        load_file("hotpotqa", path)


def test_missing_file_names_the_recipe_field(tmp_path):
    r = validate_recipe({"source": {"dataset": "musique", "test_file": str(tmp_path / "nope.jsonl")}})
    with pytest.raises(SourceError, match=r"^source\.test_file: .*nope\.jsonl does not exist"):
        load_questions(r, "test")
    with pytest.raises(SourceError, match=r"source\.train_file is not set and there is no source\.hub_id"):
        load_questions(r, "train")


def test_relative_paths_resolve_from_the_recipe(tmp_path):
    from steper_bench.recipe import load_recipe

    (tmp_path / "r.yaml").write_text(f"source:\n  dataset: musique\n  test_file: {os.path.relpath(DATA / 'musique' / 'dev.jsonl', tmp_path)}\n")
    assert len(load_questions(load_recipe(tmp_path / "r.yaml"), "test").questions) == 30


# -- the Hub code path -----------------------------------------------------------------------------------


def test_hub_rows_in_dict_of_lists_shape_parse_like_the_files(tmp_path, monkeypatch):
    """datasets.load_dataset on a folder holding a parquet file in the Hub's hotpot_qa shape
    (id; context {title, sentences}; supporting_facts {title, sent_id})."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    rows = []
    for r in raw_records("hotpotqa")[:12]:
        sf, ctx = r["supporting_facts"], r["context"]
        rows.append({
            "id": r["_id"], "question": r["question"], "answer": r["answer"], "type": r["type"], "level": r["level"],
            "supporting_facts": {"title": [t for t, _ in sf], "sent_id": [i for _, i in sf]},
            "context": {"title": [t for t, _ in ctx], "sentences": [s for _, s in ctx]},
        })
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub" / "data" / "validation-00000-of-00001.parquet")
    hub = validate_recipe({"source": {"dataset": "hotpotqa", "hub_id": str(tmp_path / "hub"), "test_limit": None}})
    res = load_questions(hub, "test")
    assert res.path_or_id == f"hub:{tmp_path / 'hub'}:validation"
    local = load_questions(recipe_for("hotpotqa"), "test").questions[:12]
    assert [q.to_dict() for q in res.questions] == [q.to_dict() for q in local]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_hub_fails_fast_with_a_clear_message(tmp_path):
    code = (
        "from steper_bench.recipe import validate_recipe\n"
        "from steper_bench.sources import load_questions, SourceError\n"
        "r = validate_recipe({'source': {'dataset': 'hotpotqa', 'hub_id': 'hotpotqa/hotpot_qa'}})\n"
        "try:\n    load_questions(r, 'test')\nexcept SourceError as e:\n    print('ERR', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR cannot reach the Hub at http://127.0.0.1:")
    assert "set source.train_file / source.test_file" in out.stdout and "HF_ENDPOINT" in out.stdout
    assert "Traceback" not in out.stderr


def test_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    r = validate_recipe({"source": {"dataset": "musique", "hub_id": "dgslibisey/MuSiQue"}})
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE is set: set source.train_file / source.test_file"):
        load_questions(r, "test")

"""The synthetic world: deterministic, in HotpotQA's format, test anchors unseen in training, and
later hops out of reach of the question alone (so retrieval has to follow the chain)."""

from __future__ import annotations

import collections

import pytest
from steper_bench.recipe import RecipeError, load_recipe
from steper_bench.sources import load_questions
from steper_bench.sources.synthetic_world import (
    WorldSettings,
    build_world,
    generate_splits,
    parse,
    world_bytes,
    write_world,
)

SMALL = WorldSettings(seed=3, train_questions=300, test_questions=100)


def _recipe(tmp_path, *sets):
    path = tmp_path / "world.yaml"
    path.write_text("name: w\nsource:\n  dataset: synthetic-world\n")
    return load_recipe(path, list(sets))


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    assert world_bytes(SMALL, "train") == world_bytes(WorldSettings(**SMALL.__dict__), "train")
    other = WorldSettings(**{**SMALL.__dict__, "seed": 4})
    assert world_bytes(SMALL, "test") != world_bytes(other, "test")
    a, b = write_world(SMALL, tmp_path / "a"), write_world(SMALL, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_hop_mix_sizes_and_hotpotqa_format():
    splits = generate_splits(SMALL)
    assert len(splits["train"]) == 300 and len(splits["test"]) == 100
    kinds = collections.Counter("c" if r["type"] == "comparison" else r["hops"] for r in splits["train"])
    assert kinds == {2: 105, 3: 90, 4: 30, "c": 75}  # 0.35 / 0.3 / 0.1 / 0.25 of 300
    world = build_world(SMALL)
    for r in splits["train"]:
        titles = [t for t, _ in r["context"]]
        assert len(titles) == len(set(titles))
        for title, idx in r["supporting_facts"]:  # every supporting fact is in the context
            assert title in titles and idx < len(world.entities[title].sentences)
        if r["type"] != "comparison":  # the chain's last supporting sentence names the answer
            last_title, idx = r["supporting_facts"][-1]
            assert r["answer"] in world.entities[last_title].sentences[idx]
    assert len({r["question"] for r in splits["train"]}) == 300


def test_test_anchors_are_never_named_by_a_training_question():
    splits = generate_splits(SMALL)
    world = build_world(SMALL)
    names = set(world.people) | set(world.works) | set(world.organisations)
    anchors = {n for r in splits["test"] for n in names if n in r["question"]}
    assert anchors
    assert not [r["question"] for r in splits["train"] for n in anchors if n in r["question"]]


def _pooled_bm25(questions):
    """BM25 over the pooled paragraphs of the questions (what a build over them retrieves from)."""
    from steper_bench.retrieval.bm25 import BM25Retriever
    from steper_bench.retrieval.corpus import build_corpus

    return BM25Retriever(build_corpus(questions, "pooled"))


def test_later_hops_are_not_found_with_the_question_alone():
    """BM25 over the pooled corpus: the first hop's paragraph is in the question's top 4, the last
    hop's paragraph of a 3- or 4-hop chain almost never is."""
    splits = generate_splits(SMALL)
    retriever = _pooled_bm25([parse(r, split) for split in ("train", "test") for r in splits[split]])
    chains = [r for r in splits["test"] if r["type"] != "comparison" and r["hops"] >= 3]
    tops = retriever.retrieve([r["question"] for r in chains], 4)
    n = len(chains)
    first = sum(r["supporting_facts"][0][0] in {p.title for p in top} for r, top in zip(chains, tops))
    last = sum(r["supporting_facts"][-1][0] in {p.title for p in top} for r, top in zip(chains, tops))
    assert n >= 30 and first / n >= 0.9 and last / n <= 0.1, (n, first, last)


def test_following_the_gold_chain_retrieves_every_hop():
    """The world is solvable by retrieve-then-reason: step 1 retrieves with the question, step i
    with the gold sentence of step i-1 (IRCoT's query); every hop's paragraph is then in the top 4
    for >= 90% of the test questions (the default world; measured 95%)."""
    settings = WorldSettings(train_questions=600, test_questions=200)
    questions = [parse(r, "test") for r in generate_splits(settings)["test"]]
    retriever = _pooled_bm25(questions)
    steps = [(q.id, q.question if i == 0 or q.type == "comparison" else q.supporting_sentences[i - 1][1], title)
             for q in questions for i, (title, _) in enumerate(q.supporting_sentences)]
    tops = retriever.retrieve([query for _, query, _ in steps], 4)
    missed = {qid for (qid, _, title), top in zip(steps, tops) if title not in {p.title for p in top}}
    assert 1 - len(missed) / len(questions) >= 0.9, len(missed)


def test_recipe_loads_the_world_and_its_settings_enter_the_build_hash(tmp_path):
    r = _recipe(tmp_path, "source.world.train_questions=50", "source.world.test_questions=20")
    train = load_questions(r, "train")
    assert len(train.questions) == 50 and train.revision.startswith("sha256:")
    assert train.questions[0].supporting_sentences and train.questions[0].dataset == "synthetic-world"
    other = _recipe(tmp_path, "source.world.train_questions=50", "source.world.test_questions=20",
                    "source.world.distractors=2")
    assert other.stage_hash("build") != r.stage_hash("build")
    assert load_questions(other, "train").revision != train.revision


def test_bad_world_settings_name_the_field(tmp_path):
    with pytest.raises(RecipeError, match="hop_mix"):
        _recipe(tmp_path, "source.world.hop_mix={'2': -1}")
    with pytest.raises(RecipeError, match="source.world"):
        load_recipe_text(tmp_path, "name: w\nsource:\n  dataset: hotpotqa\n  train_file: x.jsonl\n  world: {seed: 1}\n")
    too_many = _recipe(tmp_path, "source.world.people=20", "source.world.works=5", "source.world.train_questions=900")
    with pytest.raises(Exception, match="people / works"):
        load_questions(too_many, "train")


def load_recipe_text(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_recipe(path)


def test_packaged_demonstrations_are_what_the_generator_makes():
    import json
    from pathlib import Path

    from steper_bench import reasoning
    from steper_bench.sources.synthetic_world import demonstrations

    packaged = Path(reasoning.__file__).parent / "prompts" / "ircot" / "synthetic-world.json"
    assert json.loads(packaged.read_text()) == demonstrations()


def test_the_dataset_card_describes_the_generated_world(tmp_path):
    from steper_bench.build import build

    r = _recipe(tmp_path, "source.world.train_questions=30", "source.world.test_questions=10", "source.world.cities=90",
                "teacher.backend=supporting-facts", "teacher.model=supporting-facts", f"runs_dir={tmp_path / 'runs'}")
    build(r, progress=False, log=lambda m: None)
    card = next((tmp_path / "runs").glob("*/dataset/README.md")).read_text()
    assert "**Generated world** (ours)" in card and "cities 90" in card and "same bytes" in card

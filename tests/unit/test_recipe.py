"""The recipe schema: defaults, exact error messages, overrides, hashing, ${env:X}."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from steper_bench.recipe import RecipeError, expand_env, load_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[2]
MINIMAL = "source:\n  test_file: dev.jsonl\n"


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(RecipeError) as e:
        load_recipe(path, overrides)
    return str(e.value)


def test_minimal_recipe_is_two_lines_and_gets_paper_defaults(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL))
    assert len(MINIMAL.splitlines()) == 2
    assert r.source.dataset == "hotpotqa"
    assert (r.source.test_limit, r.source.seed) == (500, 13370)  # IRCoT convention
    assert (r.corpus.backend, r.corpus.top_k, r.framework.max_steps) == ("bm25", 4, 5)  # paper: K=4, S=5
    assert (r.train.learning_rate, r.train.num_train_epochs) == (5e-6, 2.0)  # paper
    assert [m.name for m in r.train.methods] == ["steper"] and r.dataset.filter == "acc"
    assert r.teacher.backend == "supporting-facts"
    assert r.path == (tmp_path / "r.yaml").resolve()
    assert r.resolve_path("dev.jsonl") == tmp_path.resolve() / "dev.jsonl"
    assert r.resolve_path("/abs/x.jsonl") == Path("/abs/x.jsonl")


def test_quickstart_recipe_is_valid():
    r = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert r.name == "quickstart" and r.resolve_path(r.source.test_file).exists()


def test_unknown_key_names_line_and_suggests(tmp_path):
    path = write(tmp_path, MINIMAL + "corpus:\n  backend: bm25\n  top_kk: 4\n")
    assert error_of(path) == (
        "invalid recipe\n"
        f"  {path}:5: corpus.top_kk: unknown key; did you mean 'top_k'? "
        "(allowed: backend, dense, elasticsearch, fields, files, format, index_chunk, index_path, index_stemmer, "
        "index_stopwords, max_paragraphs, mode, pool_files, pool_splits, source, top_k)"
    )


def test_unknown_section_at_top_level(tmp_path):
    path = write(tmp_path, MINIMAL + "trian:\n  student: tiny\n")
    msg = error_of(path)
    assert msg.startswith(f"invalid recipe\n  {path}:3: trian: unknown key; did you mean 'train'? (allowed: ")


def test_bad_literal_lists_allowed_values(tmp_path):
    path = write(tmp_path, "source:\n  dataset: hotpot\n  test_file: dev.jsonl\n")
    assert error_of(path) == (
        "invalid recipe\n"
        f"  {path}:2: source.dataset: 'hotpot' is not a known dataset; did you mean 'hotpotqa'? "
        "(allowed: 2wikimultihopqa, hotpotqa, musique, synthetic-world)"
    )


def test_several_errors_are_all_reported(tmp_path):
    path = write(tmp_path, MINIMAL + "corpus:\n  top_k: 0\nframework:\n  max_steps: many\n")
    msg = error_of(path)
    assert f"{path}:4: corpus.top_k: Input should be greater than or equal to 1 (got 0)" in msg
    assert f"{path}:6: framework.max_steps: Input should be a valid integer" in msg


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "source:\n  test_file: dev.jsonl\n  dataset: hotpotqa\n    seed: 1\ncorpus:\n")
    assert error_of(path) == f"{path}:4: YAML syntax error: mapping values are not allowed here"


def test_not_a_mapping_and_missing_file(tmp_path):
    assert error_of(write(tmp_path, "- a\n- b\n")) == (
        f"{tmp_path / 'r.yaml'}: a recipe is a mapping of sections (source, corpus, ...), got list"
    )
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such recipe file"
    msg = error_of(write(tmp_path, "name: x\n"))
    assert msg == f"invalid recipe\n  {tmp_path / 'r.yaml'}: source: required field is missing"


def test_source_needs_an_origin(tmp_path):
    msg = error_of(write(tmp_path, "source:\n  dataset: musique\n"))
    assert msg == (
        f"invalid recipe\n  {tmp_path / 'r.yaml'}:1: source: "
        "set source.train_file / source.test_file (local files) or source.hub_id"
    )


def test_filter_spec_is_validated(tmp_path):
    path = write(tmp_path, MINIMAL + "dataset:\n  filter: f1>=1.5\n")
    assert error_of(path) == (
        f"invalid recipe\n  {path}:4: dataset.filter: "
        "allowed: acc, em, all, or f1>=x with x in [0, 1] (e.g. f1>=0.8)"
    )
    assert load_recipe(path, ["dataset.filter=f1>=0.8"]).dataset.filter == "f1>=0.8"


def test_set_overrides_are_validated_like_the_file(tmp_path):
    path = write(tmp_path, MINIMAL + "corpus:\n  top_k: 4\n")
    r = load_recipe(path, ["corpus.top_k=8", "train.lora.enabled=true", "eval.models=[a, b]"])
    assert (r.corpus.top_k, r.train.lora.enabled, [m.model for m in r.eval.models]) == (8, True, ["a", "b"])
    # The bad value came from --set, not from line 4 of the file.
    assert error_of(path, ["corpus.top_k=0"]) == (
        f"invalid recipe\n  {path} (--set corpus.top_k=0): corpus.top_k: "
        "Input should be greater than or equal to 1 (got 0)"
    )
    from steper_bench.registry import GENERATORS

    assert error_of(path, ["teacher.backend=nonesuch"]) == (
        f"invalid recipe\n  {path} (--set teacher.backend=nonesuch): teacher.backend: 'nonesuch' is not a known "
        f"generator backend (allowed: {', '.join(GENERATORS.names())})"
    )
    assert "corpus.top_kk: unknown key; did you mean 'top_k'?" in error_of(path, ["corpus.top_kk=3"])
    assert error_of(path, ["corpus.top_k"]) == "--set 'corpus.top_k': expected dotted.key=value, e.g. --set corpus.top_k=4"
    assert error_of(path, ["corpus.top_k.x=1"]) == "--set corpus.top_k.x=1: corpus.top_k is not a section"


def test_hash_ignores_unhashed_fields_and_follows_results(tmp_path):
    path = write(tmp_path, MINIMAL)
    base = load_recipe(path)
    same = load_recipe(path, [
        "teacher.concurrency=2", "teacher.batch_size=3", "teacher.api_key=sk-abc", "eval.db=other.duckdb",
        "eval.judge.api_key=xyz", "source.strict=true", "description=hello", "train.per_device_train_batch_size=4",
    ])
    assert same.hash == base.hash and same.stage_hash("build") == base.stage_hash("build")
    other = load_recipe(path, ["corpus.top_k=5"])
    assert other.hash != base.hash
    assert all(other.stage_hash(s) != base.stage_hash(s) for s in ("build", "train", "eval"))
    # Stages depend only on what they use: a training knob leaves the build alone.
    lr = load_recipe(path, ["train.learning_rate=1e-5"])
    assert lr.stage_hash("build") == base.stage_hash("build") and lr.stage_hash("train") != base.stage_hash("train")
    assert lr.stage_hash("eval") == base.stage_hash("eval")
    ev = load_recipe(path, ["eval.few_shot=2"])
    assert ev.stage_hash("train") == base.stage_hash("train") and ev.stage_hash("eval") != base.stage_hash("eval")
    # Which models are evaluated, and the judge, change no student's numbers: same eval hash.
    listed = load_recipe(path, ["eval.models=[supporting-facts]", "eval.include_teacher=false", "eval.judge.model=x"])
    assert listed.stage_hash("eval") == base.stage_hash("eval") and listed.hash != base.hash
    assert len(base.hash) == 16 and base.hash == load_recipe(path).hash


def test_hash_reads_list_values_and_section_choices(tmp_path):
    path = write(tmp_path, MINIMAL)
    base = load_recipe(path)
    # a list-valued field: its items are part of the hash, not only its length
    splits = load_recipe(path, ["dataset.splits=[test]"])
    assert base.dataset.splits == ["train"] and splits.stage_hash("build") != base.stage_hash("build")
    modules = load_recipe(path, ["train.lora.target_modules=[q_proj]"])
    other = load_recipe(path, ["train.lora.target_modules=[v_proj]"])
    assert modules.stage_hash("train") != other.stage_hash("train")
    # content_hash over some sections ignores the others
    lr = load_recipe(path, ["train.learning_rate=1e-5"])
    assert lr.content_hash(("corpus", "source")) == base.content_hash(("corpus", "source"))
    assert lr.content_hash(("train",)) != base.content_hash(("train",)) and lr.content_hash() != base.content_hash()


def test_digest_is_sha256_of_canonical_json():
    # the one hash of recipes and run ids: stable across processes and versions, so existing run
    # folders and results keep their names; key order never matters
    import hashlib

    from steper_bench.recipe import digest

    assert digest({"b": [1, "é"], "a": {"y": None, "x": 1.5}}) == hashlib.sha256(
        b'{"a":{"x":1.5,"y":null},"b":[1,"\\u00e9"]}').hexdigest()[:16]
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_to_yaml_round_trips_to_the_same_hash(tmp_path):
    r = load_recipe(write(tmp_path, MINIMAL), ["corpus.top_k=6"])
    again = validate_recipe(yaml.safe_load(r.to_yaml()))
    assert again.hash == r.hash and again.corpus.top_k == 6


def test_env_references_stay_literal(tmp_path, monkeypatch):
    text = MINIMAL + "teacher:\n  backend: openai\n  base_url: ${env:TEACHER_URL}\n  api_key: ${env:TEACHER_KEY}\n"
    path = write(tmp_path, text)
    monkeypatch.delenv("TEACHER_URL", raising=False)
    before = load_recipe(path)
    monkeypatch.setenv("TEACHER_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("TEACHER_KEY", "sk-secret-value")
    after = load_recipe(path)
    assert after.teacher.base_url == "${env:TEACHER_URL}"
    assert after.hash == before.hash
    dumped = after.to_yaml()
    assert "${env:TEACHER_URL}" in dumped and "${env:TEACHER_KEY}" in dumped
    assert "sk-secret-value" not in dumped and "127.0.0.1:1" not in dumped
    assert expand_env(after.teacher.base_url) == "http://127.0.0.1:1/v1"
    assert expand_env("${env:TEACHER_URL}/x?k=${env:TEACHER_KEY}") == "http://127.0.0.1:1/v1/x?k=sk-secret-value"
    assert expand_env(None) is None and expand_env("plain") == "plain"


def test_expand_env_error_names_the_variable(monkeypatch):
    monkeypatch.delenv("STEPER_NOT_SET", raising=False)
    with pytest.raises(RecipeError) as e:
        expand_env("${env:STEPER_NOT_SET}", what="teacher.api_key")
    assert str(e.value) == "STEPER_NOT_SET is not set (teacher.api_key needs it): export STEPER_NOT_SET=..."

"""The IRCoT loop with real parts: bm25 over the shipped HotpotQA sample, the supporting-facts
silver teacher, and the tiny local model where a model that never answers is needed."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from steper_bench.generation.supporting_facts import make as make_silver
from steper_bench.reasoning.answers import first_sentence
from steper_bench.reasoning.loop import LoopSettings, run_loop, trajectory_step_prompt
from steper_bench.reasoning.prompts import (
    packaged_template,
    demo_question_ids,
    load_demos,
    load_template,
    prompt_hash,
    render_step,
    truncate,
)
from steper_bench.recipe import Recipe
from steper_bench.records import Paragraph
from steper_bench.retrieval import make_retriever
from steper_bench.sources import load_file


@pytest.fixture(scope="module")
def dev(repo_root):
    return load_file("hotpotqa", repo_root / "data" / "hotpotqa" / "dev.jsonl", split="test").questions


@pytest.fixture(scope="module")
def retriever(dev, repo_root):
    recipe = Recipe(source={"test_file": str(repo_root / "data" / "hotpotqa" / "dev.jsonl")})
    return make_retriever(recipe, dev, None)


@pytest.fixture(scope="module")
def silver_run(dev, retriever):
    batches: list[list[str]] = []
    trajs = run_loop(dev, retriever, make_silver(), LoopSettings(), progress=False,
                     on_finished=lambda ts: batches.append([t.question_id for t in ts]), recipe_hash="abc")
    return trajs, batches


IRCOT = packaged_template("ircot/step.j2")


def _titles(traj, pids):
    return {traj.paragraphs[p].title for p in pids}


def test_bridge_gold_paragraphs_retrieved(dev, silver_run, repo_root):
    baseline = json.loads((repo_root / "tests" / "fixtures" / "loop_baseline.json").read_text())
    trajs, _ = silver_run
    bridge = [(q, t) for q, t in zip(dev, trajs) if q.type == "bridge"]
    assert len(bridge) == baseline["bridge_questions"]

    def found(q, t, steps):
        return {title for title, _ in q.supporting_facts} <= _titles(t, [p for s in steps for p in s.context_pids])

    recall = sum(found(q, t, t.steps) for q, t in bridge) / len(bridge)
    step1 = sum(found(q, t, t.steps[:1]) for q, t in bridge) / len(bridge)
    print(f"bridge gold recall: {recall:.3f} (step 1 only: {step1:.3f}, baseline {baseline['bridge_gold_recall']:.3f})")
    assert recall >= baseline["bridge_gold_recall"] - 0.0
    assert recall > step1  # the later retrievals (query = last sentence) find the second hop


def test_silver_teacher_answers_correctly(silver_run):
    trajs, _ = silver_run
    assert all(t.stop_reason == "answered" and t.acc == 1.0 for t in trajs)
    assert all(t.generator.backend == "supporting-facts" and t.recipe_hash == "abc" for t in trajs)
    # Gold answers arrive with the last supporting sentence: 2-hop questions take ~2 steps.
    assert sum(len(t.steps) for t in trajs) / len(trajs) < 3


def test_step_records_follow_the_design(dev, silver_run):
    trajs, _ = silver_run
    settings = LoopSettings()
    for q, t in zip(dev, trajs):
        context: list[str] = []
        for n, step in enumerate(t.steps, start=1):
            assert step.index == n
            assert step.query == (q.question if n == 1 else t.steps[n - 2].reasoning)
            assert len(step.retrieved_pids) <= settings.top_k
            added = [p for p in step.retrieved_pids if p not in context][: settings.max_paragraphs - len(context)]
            assert step.new_pids == added
            context += added
            assert step.context_pids == context  # union of retrievals 1..n, in order
            prompt = trajectory_step_prompt(t, n, settings)
            assert prompt_hash(prompt) == step.prompt_hash
            assert prompt.count("Wikipedia Title: ") == len(context)
            if n == 1:  # step 1 sees only the first retrieval's paragraphs
                assert set(step.context_pids) == set(step.retrieved_pids)
                assert prompt.endswith(f"Q: {q.question}\nA:")
            else:
                assert prompt.endswith("A: " + " ".join(t.reasoning[: n - 1]))
            assert step.reasoning == first_sentence(step.reasoning) and not step.error


def test_on_finished_once_per_question(dev, silver_run):
    trajs, batches = silver_run
    ids = [i for b in batches for i in b]
    assert sorted(ids) == sorted(q.id for q in dev)
    assert len(batches) >= 2  # flushed per step, not once at the end
    # A batch holds the questions that finished at the same step.
    by_id = {t.question_id: len(t.steps) for t in trajs}
    assert all(len({by_id[i] for i in b}) == 1 for b in batches)


def test_paragraph_cap_keeps_earlier_ones(dev, retriever):
    settings = LoopSettings(top_k=4, max_paragraphs=5)
    trajs = run_loop(dev[:10], retriever, make_silver(), settings, progress=False)
    for t in trajs:
        assert all(len(s.context_pids) <= 5 for s in t.steps)
        assert t.steps[-1].context_pids[: len(t.steps[0].context_pids)] == t.steps[0].context_pids


def test_forced_final_step(dev, retriever):
    q = next(q for q in dev if len(q.supporting_sentences) >= 2)
    settings = LoopSettings(max_steps=1)
    [t] = run_loop([q], retriever, make_silver(), settings, progress=False)
    assert [s.index for s in t.steps] == [1, 2]
    last = t.steps[-1]
    assert last.query == "" and last.retrieved_pids == [] and last.context_pids == t.steps[0].context_pids
    assert t.stop_reason == "answered" and t.prediction == q.answer and t.em == 1.0
    prompt = trajectory_step_prompt(t, 2, settings)
    assert "So the answer is: <answer>." in prompt and prompt_hash(prompt) == last.prompt_hash


def test_forced_step_without_answer_is_max_steps(dev, retriever, tiny_model_dir):
    from steper_bench.generation.local import make as make_local
    from steper_bench.recipe import GeneratorConfig

    gen = make_local(GeneratorConfig(backend="transformers", model=str(tiny_model_dir), device="cpu"),
                     max_new_tokens=6)
    # max_steps=1: step 1 retrieves with the question; step 2 is the forced one (no retrieval).
    settings = LoopSettings(max_steps=1, top_k=2, paragraph_chars=120)
    trajs = run_loop(dev[:3], retriever, gen, settings, progress=False)
    for t in trajs:  # a random model never says "So the answer is"
        assert t.stop_reason == "max_steps" and [s.index for s in t.steps] == [1, 2]
        assert t.prediction == "" and t.em == t.f1 == t.acc == 0.0
        assert all(s.reasoning and s.tokens > 0 and not s.error for s in t.steps)
    assert trajs[0].generator.backend == "transformers"


def test_empty_retrieval_fails_one_question_only(dev, retriever):
    # No word of the corpus: bm25 matches nothing, so this question's first step has no paragraphs.
    stop = replace(dev[0], id="no-match", question="Xqzvbt wplokk?")
    trajs = run_loop([stop, dev[1]], retriever, make_silver(), LoopSettings(), progress=False)
    failed, ok = trajs
    assert failed.stop_reason == "failed" and failed.prediction == "" and failed.acc == 0.0
    assert len(failed.steps) == 1 and failed.steps[0].error == "retrieval returned no paragraphs"
    assert ok.stop_reason == "answered"


def test_render_step_form():
    paras = [Paragraph("p1", "Ed Wood", "Edward Davis Wood Jr. was an American filmmaker. " * 40)]
    p = render_step("Who?", paras, [], template=IRCOT, paragraph_chars=100)
    assert p.startswith("Wikipedia Title: Ed Wood\n") and p.endswith("\n\nQ: Who?\nA:")
    assert truncate(paras[0].text, 100) in p and len(truncate(paras[0].text, 100)) <= 104
    p2 = render_step("Who?", paras, ["One.", "Two."], template=IRCOT)
    assert p2.endswith("Q: Who?\nA: One. Two.")
    forced = render_step("Who?", paras, ["One."], template=IRCOT, must_answer=True)
    assert forced.endswith("Q: Who?\nA: One.") and "So the answer is: <answer>." in forced


def test_demos_are_ours_and_well_formed():
    demos = load_demos(4)
    assert len(demos) == 4 and len(demo_question_ids()) == 4
    for d in demos:
        assert d.reasoning[-1].endswith(f"So the answer is: {d.answer}.")
        assert all(first_sentence(s) == s for s in d.reasoning)  # one sentence per step
    shot = render_step("Who?", [], [], template=IRCOT, demos=demos[:2])
    assert shot.count("\nQ: ") == 3 and shot.endswith("Q: Who?\nA:")
    with pytest.raises(ValueError, match="4 are packaged"):
        load_demos(5)


def test_template_override(tmp_path, dev, retriever):
    (tmp_path / "t.j2").write_text("{% for p in paragraphs %}[{{ p.title }}]{% endfor %}\nQuestion: {{ question }}\nAnswer:"
                                   "{% for s in previous %} {{ s }}{% endfor %}")
    template = load_template(tmp_path / "t.j2")
    assert render_step("Who?", [Paragraph("p", "T", "x")], ["A."], template=template) == "[T]\nQuestion: Who?\nAnswer: A."
    with pytest.raises(FileNotFoundError, match="prompt_template"):
        load_template(tmp_path / "missing.j2")
    (tmp_path / "bad.j2").write_text("{% for %}")
    with pytest.raises(ValueError, match="line 1"):
        load_template(tmp_path / "bad.j2")


def test_settings_from_recipe(tmp_path):
    (tmp_path / "t.j2").write_text("Q: {{ question }}\nA:")
    recipe = Recipe(source={"test_file": "x.jsonl"}, corpus={"top_k": 3, "max_paragraphs": 9},
                    framework={"few_shot": 3, "max_steps": 4, "prompt_template": "t.j2", "max_new_tokens": 50},
                    eval={"few_shot": 0, "max_new_tokens": 20})
    recipe._path = tmp_path / "recipe.yaml"
    teacher = LoopSettings.from_recipe(recipe, "teacher")
    student = LoopSettings.from_recipe(recipe, "student")
    assert (teacher.top_k, teacher.max_paragraphs, teacher.max_steps) == (3, 9, 4)
    assert len(teacher.demos) == 3 and student.demos == []
    assert (teacher.max_new_tokens, student.max_new_tokens) == (50, 20)
    assert teacher.template == "Q: {{ question }}\nA:"


def test_empty_query_fails_without_retrieval(dev, retriever):
    blank = replace(dev[0], id="blank", question="   ")
    [t] = run_loop([blank], retriever, make_silver(), LoopSettings(), progress=False)
    assert t.stop_reason == "failed" and t.steps[0].error == "empty query" and t.steps[0].retrieved_pids == []


class _FailingFor:
    """Wraps the silver teacher and, for one question, reports a backend failure (as the HTTP
    backend does after its retries) or an empty answer (as a weak local model can give)."""

    def __init__(self, qid: str, error: str = "HTTP 500 after 6 retries"):
        self.inner, self.qid, self.error = make_silver(), qid, error
        self.identity = self.inner.identity

    def generate(self, requests):
        out = self.inner.generate(requests)
        for r, res in zip(requests, out):
            if r.question.id == self.qid:
                res.error, res.text = self.error, ""
        return out


def test_generator_error_fails_one_question_only(dev, retriever):
    trajs = run_loop(dev[:3], retriever, _FailingFor(dev[1].id), LoopSettings(), progress=False)
    assert [t.stop_reason for t in trajs] == ["answered", "failed", "answered"]
    assert trajs[1].steps[-1].error == "HTTP 500 after 6 retries" and trajs[1].steps[-1].reasoning == ""


def test_silver_teacher_prefers_grounded_sentences(dev):
    from steper_bench.generation.base import StepRequest

    q = next(q for q in dev if len({t for t, _ in q.supporting_sentences}) == 2)
    (t1, s1), (t2, s2) = q.supporting_sentences[0], q.supporting_sentences[-1]
    second = [p for p in q.paragraphs if p.title == t2]
    gen = make_silver()
    fw = LoopSettings().framework
    [r] = gen.generate([StepRequest(prompt="", question=q, context=second, previous=[], framework=fw)])
    assert r.text.startswith(s2.strip()[:20]) and r.extra["grounded"] is True
    [r] = gen.generate([StepRequest(prompt="", question=q, context=[], previous=[], framework=fw)])
    assert r.text.startswith(s1.strip()[:20]) and r.extra["grounded"] is False
    [r] = gen.generate([StepRequest(prompt="", question=q, context=[], previous=[], must_answer=True, framework=fw)])
    assert r.text == f"So the answer is: {q.answer}."


@pytest.mark.parametrize("text, expected", [
    (" Danilo Donati won it for Romeo and Juliet. Then more.", "Danilo Donati won it for Romeo and Juliet."),
    ("The film is set in St. Louis. Next", "The film is set in St. Louis."),
    ("It was directed by F.W. Murnau. So the answer is: Nosferatu. Extra.",
     "It was directed by F.W. Murnau. So the answer is: Nosferatu."),
    ("So the answer is: St. Louis. And", "So the answer is: St. Louis."),
    ("Who is it? I don't know.", "Who is it?"),
    ("A line\nQ: next question", "A line"),
    ("Harvey Fuqua died in 2010.\nSo the answer is: 2010.", "Harvey Fuqua died in 2010."),
    ("no terminator here", "no terminator here"),
    ("It is the U.S. Army. So the answer is: U.S. Army.", "It is the U.S. Army. So the answer is: U.S. Army."),
    ("", ""),
])
def test_first_sentence(text, expected):
    assert first_sentence(text) == expected


@pytest.mark.parametrize("text, complete", [
    ("Fact. The", True), ("Fact. So the ans", False), ("Fact. So the answer is: Paris", False),
    ("Fact.", False), ("Fact.\n", True), ("So the answer is: St. Lo", False), ("So the answer is: Paris. B", True),
])
def test_sentence_complete(text, complete):
    from steper_bench.reasoning.answers import sentence_complete

    assert sentence_complete(text) is complete


@pytest.mark.parametrize("dataset", ["2wikimultihopqa", "musique"])
def test_dataset_demos_come_from_train_and_end_with_the_gold_answer(dataset, repo_root):
    from steper_bench.metrics import exact_match, extract_answer

    data = repo_root / "data" / dataset
    train = {q.id: q for q in load_file(dataset, data / "train.jsonl", split="train").questions}
    dev_ids = {q.id for q in load_file(dataset, data / "dev.jsonl", split="test").questions}
    ids = demo_question_ids(dataset)
    demos = load_demos(4, dataset)
    assert {d.qid for d in demos} == ids and len(ids) == 4
    assert ids <= set(train) and not ids & dev_ids  # train questions: the build leaves them out
    assert not ids & demo_question_ids("hotpotqa")  # its own file, not the HotpotQA fallback
    assert len({train[i].type for i in ids}) >= 2  # varied question types
    for d in demos:
        q = train[d.qid]
        assert d.question == q.question
        assert exact_match(extract_answer(" ".join(d.reasoning)) or "", q.answers) == 1.0
        assert d.reasoning[-1].endswith(f"So the answer is: {d.answer}.")
        assert all(first_sentence(s) == s for s in d.reasoning)  # one sentence per step
        assert not any(extract_answer(s) for s in d.reasoning[:-1])  # only the last step answers
        texts = {p.text for p in q.paragraphs}
        assert all(p.text in texts for p in d.paragraphs)  # the dataset's paragraphs, verbatim
        assert {p.title for p in q.paragraphs if p.is_supporting} <= {p.title for p in d.paragraphs}


def test_loop_settings_use_the_dataset_demos_and_name_the_field_when_too_many(repo_root):
    from steper_bench.recipe import RecipeError

    src = {"dataset": "musique", "test_file": str(repo_root / "data" / "musique" / "dev.jsonl")}
    teacher = LoopSettings.from_recipe(Recipe(source=src, framework={"few_shot": 2}), "teacher")
    assert [d.qid for d in teacher.demos] == [d.qid for d in load_demos(2, "musique")]
    with pytest.raises(RecipeError, match=r"eval\.few_shot.*allowed maximum: 4"):
        LoopSettings.from_recipe(Recipe(source=src, eval={"few_shot": 5}), "student")


def test_build_with_too_many_few_shot_is_a_recipe_error(tmp_path, repo_root):
    from typer.testing import CliRunner

    from steper_bench.cli import app

    result = CliRunner().invoke(app, [
        "build", str(repo_root / "recipes" / "quickstart.yaml"),
        "--set", "framework.few_shot=9", "--set", f"runs_dir={tmp_path}", "--quiet",
    ])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "framework.few_shot" in result.output and "allowed maximum: 4" in result.output


def test_empty_model_output_stops_as_empty_not_failed(dev, retriever):
    trajs = run_loop(dev[:3], retriever, _FailingFor(dev[1].id, error=""), LoopSettings(), progress=False)
    assert [t.stop_reason for t in trajs] == ["answered", "empty", "answered"]
    assert trajs[1].steps[-1].error == "" and trajs[1].prediction == "" and trajs[1].acc == 0.0

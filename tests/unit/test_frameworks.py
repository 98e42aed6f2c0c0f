"""The framework seam: IRCoT's query rule, Self-Ask, single-step and no-retrieval through the one
loop with the silver teacher on the shipped samples; step boundaries; and the step-wise prompts
equal, byte for byte, the prompts the loop sent."""

from __future__ import annotations

import pytest

from steper_bench.generation import GeneratorError
from steper_bench.generation.supporting_facts import make as make_silver
from steper_bench.reasoning.frameworks import get_framework
from steper_bench.reasoning.frameworks.ircot import ircot_query, is_reasoning_sentence
from steper_bench.reasoning.frameworks.self_ask import SelfAsk
from steper_bench.reasoning.loop import LoopSettings, run_loop
from steper_bench.recipe import Recipe
from steper_bench.retrieval import make_retriever
from steper_bench.sources import load_file
from steper_bench.stepwise import expand


def _questions(repo_root, dataset: str, n: int):
    return load_file(dataset, repo_root / "data" / dataset / "dev.jsonl", split="test").questions[:n]


def _retriever(repo_root, dataset: str, questions):
    recipe = Recipe(source={"dataset": dataset, "test_file": str(repo_root / "data" / dataset / "dev.jsonl")})
    return make_retriever(recipe, questions, None)


class Recording:
    """Wraps a generator and keeps every prompt it was sent, by (question id, step)."""

    def __init__(self, inner):
        self.inner, self.identity, self.prompts = inner, inner.identity, {}

    def generate(self, requests):
        for r in requests:
            self.prompts[(r.question.id, len(r.previous) + 1)] = r.prompt
        return self.inner.generate(requests)


def _run(repo_root, dataset, framework, n=12, **settings):
    qs = _questions(repo_root, dataset, n)
    gen = Recording(make_silver())
    st = LoopSettings(framework=get_framework(framework), **settings)
    return qs, run_loop(qs, _retriever(repo_root, dataset, qs), gen, st, progress=False), gen, st


# -- IRCoT's query rule --------------------------------------------------------------------------------


def test_ircot_query_rule_skips_reasoning_sentences_and_wh_words():
    assert is_reasoning_sentence("So the answer is: Paris.") and is_reasoning_sentence("Thus, X.")
    assert is_reasoning_sentence("It has 3 + 4 = 7 legs.") and not is_reasoning_sentence("Soho is in London.")
    assert ircot_query("Who is the father of X?", []) == "the father of X?"
    assert ircot_query("Q?", ["Ann was born in Rome.", "So Ann is Italian."]) == "Ann was born in Rome."
    assert ircot_query("Which city is it?", ["Thus, it is big."]) == "city it?"


def test_ircot_query_option_reaches_the_retriever(repo_root):
    qs, trajs, _, _ = _run(repo_root, "hotpotqa", "ircot", n=6, query_rule="ircot")
    for q, t in zip(qs, trajs):
        assert t.steps[0].query == ircot_query(q.question, [])
        for prev, step in zip(t.steps, t.steps[1:]):
            if step.query:
                assert step.query == ircot_query(q.question, [s.reasoning for s in t.steps[: step.index - 1]])


# -- Self-Ask ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["musique", "2wikimultihopqa"])
def test_self_ask_silver_follows_the_gold_decomposition(repo_root, dataset):
    qs, trajs, _, _ = _run(repo_root, dataset, "self-ask", max_steps=5)
    answered = [t for t in trajs if t.stop_reason == "answered"]
    assert len(answered) >= len(trajs) - 2 and sum(t.acc for t in trajs) >= len(trajs) - 2
    for q, t in zip(qs, trajs):
        assert t.steps[0].reasoning.startswith("Follow up: ") and t.steps[0].query == q.question
        for step in t.steps[1:]:
            assert step.reasoning.startswith("Intermediate answer: ")
        for prev, step in zip(t.steps, t.steps[1:]):  # each later query is the previous follow-up question
            asked = prev.reasoning.split("Follow up: ")[-1]
            assert step.query == (asked if step.index <= 5 else "")
        if t.stop_reason == "answered":
            assert "So the final answer is: " in t.steps[-1].reasoning and t.prediction == q.answer.strip().rstrip(".")


def test_self_ask_silver_on_hotpotqa_is_a_clear_error(repo_root):
    with pytest.raises(GeneratorError, match="hotpotqa question .* has none: use an LLM teacher"):
        _run(repo_root, "hotpotqa", "self-ask", n=2)


def test_self_ask_parsing_and_stops():
    fw = SelfAsk()
    assert fw.parse_step("Intermediate answer: Zimbabwe.\nFollow up: Which falls?\nIntermediate answer: x") == \
        "Intermediate answer: Zimbabwe.\nFollow up: Which falls?"
    assert fw.parse_step("Are follow up questions needed here: Yes.\nFollow up: A?") == "Follow up: A?"
    assert fw.answer("Intermediate answer: V.\nSo the final answer is: Victoria Falls.") == "Victoria Falls"
    assert fw.answer("Intermediate answer: V.\nFollow up: B?") is None
    assert fw.complete("Follow up: A?\nIntermediate answer:") and not fw.complete("Follow up: A?")
    assert fw.complete("Intermediate answer: a.\nSo the final answer is: b.\n")


# -- single-step and no-retrieval ----------------------------------------------------------------------


def test_single_step_uses_exactly_one_step_and_one_retrieval(repo_root):
    qs, trajs, gen, _ = _run(repo_root, "hotpotqa", "single-step", top_k=4)
    for q, t in zip(qs, trajs):
        assert len(t.steps) == 1 and t.steps[0].query == q.question and len(t.steps[0].retrieved_pids) <= 4
        assert t.stop_reason == "answered" and "So the answer is:" in t.steps[0].reasoning
    assert set(gen.prompts) == {(q.id, 1) for q in qs}  # no forced second generation


def test_single_step_without_an_answer_stops_at_max_steps(repo_root):
    class Mute:
        identity = make_silver().identity

        def generate(self, requests):
            from steper_bench.generation.base import StepResult

            return [StepResult(text="I am not sure about this one.") for _ in requests]

    qs = _questions(repo_root, "hotpotqa", 3)
    trajs = run_loop(qs, _retriever(repo_root, "hotpotqa", qs), Mute(),
                     LoopSettings(framework=get_framework("single-step")), progress=False)
    assert [(len(t.steps), t.stop_reason) for t in trajs] == [(1, "max_steps")] * 3


def test_no_retrieval_retrieves_and_shows_nothing(repo_root):
    class Refusing:
        def retrieve(self, *a, **k):
            raise AssertionError("no-retrieval must not retrieve")

    qs = _questions(repo_root, "hotpotqa", 6)
    gen = Recording(make_silver())
    settings = LoopSettings.from_recipe(Recipe(source={"test_file": "x"}, framework={"name": "no-retrieval",
                                                                                     "few_shot": 2}), "teacher")
    trajs = run_loop(qs, Refusing(), gen, settings, progress=False)
    assert all(len(t.steps) == 1 and not t.steps[0].retrieved_pids and not t.steps[0].context_pids for t in trajs)
    assert all("Wikipedia Title:" not in p for p in gen.prompts.values())  # demos lose their paragraphs too
    assert all(p.count("\nQ: ") == 2 for p in gen.prompts.values())
    assert sum(t.acc for t in trajs) == len(trajs)


# -- step boundaries -----------------------------------------------------------------------------------


class NeverAnswers:
    """Says a fact each step and answers only when forced."""

    identity = make_silver().identity

    def generate(self, requests):
        from steper_bench.generation.base import StepResult

        return [StepResult(text="So the answer is: Paris." if r.must_answer else f"Fact number {len(r.previous) + 1}.")
                for r in requests]


@pytest.mark.parametrize("max_steps", [1, 2, 3])
def test_forced_step_is_exactly_step_max_steps_plus_one(repo_root, max_steps):
    qs = _questions(repo_root, "hotpotqa", 2)
    gen = Recording(NeverAnswers())
    trajs = run_loop(qs, _retriever(repo_root, "hotpotqa", qs), gen, LoopSettings(max_steps=max_steps), progress=False)
    for q, t in zip(qs, trajs):
        assert len(t.steps) == max_steps + 1 and t.stop_reason == "answered"
        at_max, forced = t.steps[max_steps - 1], t.steps[max_steps]
        assert at_max.retrieved_pids and "Answer now" not in gen.prompts[(q.id, max_steps)]  # index == max_steps
        assert forced.index == max_steps + 1 and forced.retrieved_pids == [] and forced.query == ""
        assert "Answer now" in gen.prompts[(q.id, max_steps + 1)]
        assert forced.context_pids == at_max.context_pids


# -- step-wise prompts are the loop's prompts --------------------------------------------------------------


@pytest.mark.parametrize("dataset, framework", [("hotpotqa", "ircot"), ("musique", "self-ask"),
                                                ("hotpotqa", "single-step")])
def test_every_training_prompt_is_the_prompt_the_loop_sent(repo_root, dataset, framework):
    qs, trajs, gen, settings = _run(repo_root, dataset, framework, max_steps=2)  # max_steps 2: forced steps too
    assert any(len(t.steps) == 3 for t in trajs) or framework == "single-step"
    checked = 0
    for t in trajs:
        for kind, rows in expand(t, settings, final_target="last-step").items():
            for row in rows:
                if kind != "vanilla_kd":
                    assert row["prompt"] == gen.prompts[(t.question_id, row["step_index"])]
                    checked += 1
        n = len(t.steps)
        [chain] = expand(t, settings)["final"]  # the chain form: step n's prompt before any step
        assert chain["prompt"] == settings.prompt(t.question, [t.paragraphs[p] for p in t.steps[-1].context_pids], [], n)
        assert (t.question + chain["completion"]).count(t.steps[-1].reasoning) == 1
    assert checked >= len(trajs)

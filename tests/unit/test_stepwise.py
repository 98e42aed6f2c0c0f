"""Step-wise expansion: kinds per chain length, what each prompt contains, stable ids, datasets."""

from __future__ import annotations

import pytest

from steper_bench.reasoning.frameworks import get_framework
from steper_bench.reasoning.loop import LoopSettings
from steper_bench.records import GeneratorIdentity, Paragraph, Step, Trajectory
from steper_bench.stepwise import CONFIGS, build_dataset_dict, expand


def make_trajectory(n: int, qid: str = "q1", answer: str = "Paris") -> Trajectory:
    """n steps; step t adds paragraph P{t} (accumulating) and says R{t}; the last one answers."""
    paras = {f"p{t}": Paragraph(f"p{t}", f"Title {t}", f"Text of paragraph number {t}.") for t in range(1, n + 1)}
    steps = []
    for t in range(1, n + 1):
        reasoning = f"Reasoning sentence {t}." if t < n else f"Reasoning sentence {t}. So the answer is: {answer}."
        steps.append(Step(
            index=t, query="Q?" if t == 1 else f"Reasoning sentence {t - 1}.", retrieved_pids=[f"p{t}"],
            new_pids=[f"p{t}"], context_pids=[f"p{i}" for i in range(1, t + 1)], prompt_hash="h", reasoning=reasoning,
        ))
    return Trajectory(
        question_id=qid, dataset="hotpotqa", split="train", question="Where is the tower?", answers=[answer],
        generator=GeneratorIdentity("supporting-facts", "teacher-x"), steps=steps, paragraphs=paras,
        prediction=answer, stop_reason="answered", em=1.0, f1=1.0, acc=1.0, recipe_hash="abc",
    )


@pytest.mark.parametrize("n, counts", [(1, (0, 0, 1)), (2, (1, 0, 1)), (3, (1, 1, 1)), (5, (1, 3, 1))])
def test_counts_per_kind(n, counts):
    out = expand(make_trajectory(n))
    assert (len(out["first"]), len(out["mid"]), len(out["final"])) == counts
    assert len(out["vanilla_kd"]) == 1
    ids = [e["id"] for rows in out.values() for e in rows]
    assert len(ids) == len(set(ids))


def test_first_prompt_has_only_p1_and_no_reasoning():
    ex = expand(make_trajectory(3))["first"][0]
    assert "Text of paragraph number 1." in ex["prompt"]
    assert "paragraph number 2" not in ex["prompt"] and "paragraph number 3" not in ex["prompt"]
    assert ex["prompt"].rstrip().endswith("A:")
    assert ex["completion"] == " Reasoning sentence 1."
    assert ex["id"] == "q1:first:1" and ex["kind"] == "first" and ex["step_index"] == 1
    assert ex["context_pids"] == ["p1"] and ex["teacher"] == "teacher-x" and ex["recipe_hash"] == "abc"


def test_mid_prompts_have_paragraphs_and_reasoning_so_far():
    mids = expand(make_trajectory(4))["mid"]
    assert [m["step_index"] for m in mids] == [2, 3]
    for m in mids:
        t = m["step_index"]
        for i in range(1, t + 1):
            assert f"paragraph number {i}." in m["prompt"]
        assert f"paragraph number {t + 1}." not in m["prompt"]
        previous = " ".join(f"Reasoning sentence {i}." for i in range(1, t))
        assert m["prompt"].endswith("A: " + previous)
        assert f"Reasoning sentence {t}." not in m["prompt"]
        assert m["completion"] == f" Reasoning sentence {t}."


def test_final_is_the_complete_chain_the_same_row_as_vanilla_kd():
    """The paper's final-step data: question + all paragraphs -> the whole reasoning."""
    t = make_trajectory(3)
    out = expand(t)
    final, vk = out["final"][0], out["vanilla_kd"][0]
    assert all(f"paragraph number {i}." in final["prompt"] for i in (1, 2, 3))
    assert final["prompt"].rstrip().endswith("A:") and "Reasoning sentence" not in final["prompt"]
    assert final["completion"] == " Reasoning sentence 1. Reasoning sentence 2. Reasoning sentence 3. So the answer is: Paris."
    assert {k: v for k, v in final.items() if k not in ("id", "kind")} == \
        {k: v for k, v in vk.items() if k not in ("id", "kind")}
    assert (final["id"], final["kind"], vk["id"], vk["kind"]) == ("q1:final:3", "final", "q1:vanilla_kd:3", "vanilla_kd")
    # Exactly the zero-shot prompt the student sees at evaluation at the last step, with no steps yet.
    context = [t.paragraphs[p] for p in t.steps[2].context_pids]
    assert final["prompt"] == LoopSettings().prompt(t.question, context, [], 3)


def test_last_step_target_is_the_last_sentence_after_the_earlier_ones():
    t = make_trajectory(3)
    final = expand(t, final_target="last-step")["final"][0]
    assert final["completion"] == " Reasoning sentence 3. So the answer is: Paris."
    assert all(f"paragraph number {i}." in final["prompt"] for i in (1, 2, 3))
    assert final["prompt"].endswith("A: Reasoning sentence 1. Reasoning sentence 2.")
    context = [t.paragraphs[p] for p in t.steps[2].context_pids]
    assert final["prompt"] == LoopSettings().prompt(t.question, context, t.reasoning[:2], 3)
    with pytest.raises(ValueError, match="final_target"):
        expand(t, final_target="whole")


def test_self_ask_steps_join_with_newlines():
    t = make_trajectory(3)
    for s, text in zip(t.steps, ["Follow up: Which city?", "Intermediate answer: Paris.\nFollow up: Which tower?",
                                 "Intermediate answer: Eiffel.\nSo the final answer is: Paris."]):
        s.reasoning = text
    out = expand(t, LoopSettings(framework=get_framework("self-ask")))
    first, mid, final = out["first"][0], out["mid"][0], out["final"][0]
    assert first["prompt"].endswith("Are follow up questions needed here: Yes.\n")
    assert first["completion"] == "Follow up: Which city?"
    assert mid["prompt"].endswith("Yes.\nFollow up: Which city?\n") and mid["completion"].startswith("Intermediate")
    assert final["completion"] == "\n".join(s.reasoning for s in t.steps)


def test_single_step_chain_is_final_only():
    out = expand(make_trajectory(1))
    assert out["final"][0]["id"] == "q1:final:1"
    assert out["final"][0]["completion"] == " Reasoning sentence 1. So the answer is: Paris."


def test_vanilla_kd_has_all_paragraphs_and_the_whole_chain():
    vk = expand(make_trajectory(3))["vanilla_kd"][0]
    assert all(f"paragraph number {i}." in vk["prompt"] for i in (1, 2, 3))
    assert vk["prompt"].rstrip().endswith("A:") and "Reasoning sentence" not in vk["prompt"]
    assert vk["completion"] == " Reasoning sentence 1. Reasoning sentence 2. Reasoning sentence 3. So the answer is: Paris."


def test_forced_step_keeps_the_answer_now_line():
    t = make_trajectory(3)
    forced = expand(t, LoopSettings(max_steps=2))["final"][0]
    plain = expand(t, LoopSettings(max_steps=5))["final"][0]
    assert forced["prompt"] != plain["prompt"] and "So the answer is" in forced["prompt"]


def test_missing_paragraph_is_an_error():
    t = make_trajectory(2)
    del t.paragraphs["p2"]
    with pytest.raises(ValueError, match="p2"):
        expand(t)


def test_build_dataset_dict_configs_splits_and_filter():
    train = [make_trajectory(1, "a"), make_trajectory(3, "b"), make_trajectory(2, "c")]
    test = [make_trajectory(2, "t1")]
    dd = build_dataset_dict({"train": train, "test": test}, keep=lambda t: t.question_id != "c")
    assert set(dd) == set(CONFIGS)
    assert dd["first"]["train"]["id"] == ["b:first:1"]
    assert dd["mid"]["train"].num_rows == 1 and dd["mid"]["test"].num_rows == 0  # empty split, same schema
    assert dd["mid"]["test"].features == dd["mid"]["train"].features
    assert dd["final"]["train"]["question_id"] == ["a", "b"]
    traj = dd["trajectories"]["train"]
    assert traj["question_id"] == ["a", "b", "c"] and traj["kept"] == [True, True, False]
    assert traj[1]["steps"][2]["reasoning"].endswith("So the answer is: Paris.")
    assert traj[1]["n_steps"] == 3 and traj[1]["generator"]["model"] == "teacher-x"


def test_trajectories_config_keeps_every_field():
    """A stored trajectory reads back as the trajectory itself: no step, paragraph or generator
    field lost or renamed by the Parquet schema; missing generator fields are stored as ""."""
    from dataclasses import fields

    from steper_bench.stepwise import build_rows

    t = make_trajectory(3, "b")
    t.generator = GeneratorIdentity("openai", "teacher-x", base_url="http://h/v1", revision=None)
    t.steps[0].latency_s, t.steps[0].tokens, t.steps[0].grounded, t.steps[1].error = 0.25, 7, True, "HTTP 500"
    t.steps[2].cached = True
    row = build_dataset_dict({"train": [t]})["trajectories"]["train"][0]
    assert row["generator"] == {"backend": "openai", "model": "teacher-x", "base_url": "http://h/v1", "revision": ""}
    names = {f.name for f in fields(Trajectory)}
    back = Trajectory.from_dict({k: v for k, v in row.items() if k in names})
    t.generator.revision = ""
    assert back == t
    assert (row["id"], row["teacher"], row["n_steps"], row["kept"]) == ("b", "teacher-x", 3, True)
    # without a keep rule every trajectory is kept and expanded
    rows = build_rows([t, make_trajectory(2, "c")])
    assert [r["kept"] for r in rows["trajectories"]] == [True, True] and len(rows["final"]) == 2


def test_expansion_options_reach_every_row():
    t = make_trajectory(4)
    # build_dataset_dict passes the expansion options on (here: last-step finals)
    dd = build_dataset_dict({"train": [t]}, final_target="last-step")
    assert dd["final"]["train"]["completion"] == [" Reasoning sentence 4. So the answer is: Paris."]
    last = expand(t, final_target="last-step")["final"][0]
    assert (last["id"], last["kind"], last["step_index"]) == ("q1:final:4", "final", 4)
    mids = expand(t)["mid"]
    assert [(m["id"], m["kind"]) for m in mids] == [("q1:mid:2", "mid"), ("q1:mid:3", "mid")]
    # training prompts are zero-shot even when the settings carry demonstrations
    from steper_bench.reasoning.prompts import load_demos

    few = LoopSettings(demos=get_framework("ircot").prepare_demos(load_demos(2)))
    assert few.prompt(t.question, [], [], 1) != LoopSettings().prompt(t.question, [], [], 1)
    assert expand(t, few) == expand(t, LoopSettings())
    with pytest.raises(ValueError, match="^final_target must be one of chain, last-step, got 'whole'$"):
        expand(t, final_target="whole")


def test_missing_paragraphs_are_listed_five_at_most():
    t = make_trajectory(2)
    t.steps[1].context_pids += [f"x{i}" for i in range(7)]
    with pytest.raises(ValueError, match=r"^trajectory q1: context pids without paragraphs: \['x0', 'x1', 'x2', 'x3', 'x4'\]$"):
        expand(t)

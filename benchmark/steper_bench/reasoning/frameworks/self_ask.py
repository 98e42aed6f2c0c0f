"""Self-Ask with retrieval (Press et al., 2023): decompose into follow-up questions, each
answered from paragraphs retrieved with it.

The prompt ends "Are follow up questions needed here: Yes." and the steps so far, one per line.

- step 1: retrieve with the question; write "Follow up: <sub-question 1>";
- step t > 1: retrieve with the follow-up question of step t-1; write "Intermediate answer:
  <answer t-1>" and either "Follow up: <sub-question t>" or "So the final answer is: <answer>"
  (which ends the chain).

Generation stops before the model writes the next "Intermediate answer:" itself (that one must
wait for retrieval). Steps join with newlines. Step-wise data and judge roles are the base
class's: step 1 (the first decomposition from P1) is `first`, the last `last`.

Silver teacher: writes the chain from the gold decomposition (Question.decomposition: MuSiQue's
question_decomposition, 2Wiki's evidences); a dataset without one (HotpotQA) is a clear error.
"""

from __future__ import annotations

import re

from steper_bench.metrics import extract_answer
from steper_bench.reasoning.frameworks.base import Framework, SilverUnavailable

FOLLOW_UP = "Follow up:"
INTERMEDIATE = "Intermediate answer:"
_FINAL = re.compile(r"so\s+the\s+final\s+answer\s+is\b", re.IGNORECASE)
_PREAMBLE = re.compile(r"^are follow up questions needed here", re.IGNORECASE)


def final_answer(text: str) -> str | None:
    """The answer after the last "So the final answer is:", cleaned as extract_answer cleans."""
    marks = list(_FINAL.finditer(text))
    return extract_answer("the answer is" + text[marks[-1].end():]) if marks else None


class SelfAsk(Framework):
    name = "self-ask"
    template = "self-ask/step.j2"
    demos_key = "self-ask"
    stop = ("\n" + INTERMEDIATE, "\n\n")
    step_prefix = ""
    joiner = "\n"

    def query(self, question, previous, index, settings) -> str:
        if index == 1:
            return question.question
        lines = [ln.strip() for ln in previous[-1].split("\n")]
        asked = [ln[len(FOLLOW_UP):].strip() for ln in lines if ln.startswith(FOLLOW_UP)]
        return asked[-1] if asked else ""

    def parse_step(self, text: str) -> str:
        out = []
        for line in (ln.strip() for ln in text.strip().split("\n")):
            if not line or _PREAMBLE.match(line):
                continue
            out.append(" ".join(line.split()))
            if line.startswith(FOLLOW_UP) or _FINAL.search(line):
                break
        return "\n".join(out)

    def complete(self, text: str) -> bool:
        if super().complete(text.lstrip()):
            return True
        mark = _FINAL.search(text)
        return bool(mark) and "\n" in text[mark.end():]

    def answer(self, step: str) -> str | None:
        return final_answer(step)

    def silver_step(self, req):
        from steper_bench.generation.base import StepResult

        q = req.question
        hops = list(q.decomposition)
        if not hops:
            raise SilverUnavailable(
                f"the supporting-facts teacher writes Self-Ask chains from a gold decomposition (MuSiQue's "
                f"question_decomposition, 2Wiki's evidences); {q.dataset} question {q.id} has none: use an LLM "
                "teacher (teacher.backend: openai or transformers) or framework.name: ircot"
            )
        answers = [a for _, a, _ in hops]
        done = len(req.previous)  # follow-ups asked so far (one per step)
        lines = [f"{INTERMEDIATE} {_sentence(answers[done - 1])}"] if done else []
        if req.must_answer or done >= len(hops):
            lines.append(f"So the final answer is: {_sentence(q.answer)}")
        else:
            lines.append(f"{FOLLOW_UP} {_fill(hops[done][0], answers)}")
        text = "\n".join(lines)
        # Grounded: the paragraph of the intermediate answer this step states was retrieved.
        grounded = hops[done - 1][2] in {p.title for p in req.context} if done else None
        return StepResult(text=text, tokens=len(text.split()), extra={"grounded": grounded})


def _sentence(text: str) -> str:
    return text.strip().rstrip(".") + "."


def _fill(sub_question: str, answers: list[str]) -> str:
    """MuSiQue writes later hops with "#k" for the answer of hop k: put the answers in."""
    return re.sub(r"#(\d+)", lambda m: answers[int(m.group(1)) - 1] if 0 < int(m.group(1)) <= len(answers)
                  else m.group(0), sub_question)


FRAMEWORK = SelfAsk()

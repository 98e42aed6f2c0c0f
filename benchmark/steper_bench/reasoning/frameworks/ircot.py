"""IRCoT (Trivedi et al., ACL 2023): interleave retrieval with chain-of-thought, one sentence per step.

- query: step 1 the question; later steps the last generated sentence. `framework.query: ircot`
  applies IRCoT's own rule instead (commaqa/inference/ircot.py, `question_or_last_generated_sentence`):
  drop "reasoning sentences" (starting with thus / so / that is / therefore / hence, or holding
  an arithmetic equation), take the last remaining sentence (else the question), then remove the
  wh-words who, what, when, where, why, which, how, does, is before BM25. Our default
  (`last-sentence`) sends the last sentence as it is, so a query never falls back to an earlier
  sentence or drops words.
- prompt: `prompts/ircot/step.j2`, IRCoT's reader form ("Wikipedia Title: ..." blocks, "Q:", "A:"
  and the sentences so far); demonstrations: the dataset spec's `ircot` file (ours).
- a step is the first sentence of the generation (a directly following "So the answer is: X."
  included); it ends the chain when it states "So the answer is: X" (IRCoT's exit rule).
- silver teacher: the next gold supporting sentence not yet stated, preferring one whose
  paragraph is already in the context; the last carries "So the answer is: <gold>.".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from steper_bench.reasoning.answers import extract_answer, first_sentence, sentence_complete
from steper_bench.reasoning.frameworks.base import Framework

_REASONING_STARTERS = ("thus ", "thus,", "so ", "so,", "that is,", "therefore", "hence")
_EQUATION = re.compile(r"(.*)(\d[\d,]*\.?\d+|\d+) ([+-]) (\d[\d,]*\.?\d+|\d+) = (\d[\d,]*\.?\d+|\d+)(.*)")
_WH_WORDS = {"who", "what", "when", "where", "why", "which", "how", "does", "is"}
QUERY_RULES = ("last-sentence", "ircot")


def is_reasoning_sentence(sentence: str) -> bool:
    """IRCoT's test for a sentence that states no new fact (not worth retrieving with)."""
    low = sentence.lower()
    return low.startswith(_REASONING_STARTERS) or bool(_EQUATION.match(sentence))


def remove_wh_words(text: str) -> str:
    return " ".join(w for w in text.split(" ") if w.strip().lower() not in _WH_WORDS)


def ircot_query(question: str, previous: Sequence[str]) -> str:
    facts = [s for s in previous if not is_reasoning_sentence(s)]
    last = facts[-1].strip() if facts else ""
    return remove_wh_words(last or question)


def answer_clause(gold: str) -> str:
    return f"So the answer is: {gold.strip().rstrip('.')}."


def clean_sentence(sentence: str) -> str:
    """One loop-sized sentence: HotpotQA's leading spaces gone, cut as the loop would cut it."""
    s = first_sentence(sentence.strip())
    return s if s.endswith((".", "?", "!")) else s + "."


class IRCoT(Framework):
    name = "ircot"
    template = "ircot/step.j2"
    demos_key = "ircot"

    def query(self, question, previous, index, settings) -> str:
        if getattr(settings, "query_rule", "last-sentence") == "ircot":
            return ircot_query(question.question, previous)
        return question.question if index == 1 else previous[-1]

    def parse_step(self, text: str) -> str:
        return first_sentence(text)

    def complete(self, text: str) -> bool:
        return sentence_complete(text)

    def answer(self, step: str) -> str | None:
        return extract_answer(step)

    def silver_step(self, req):
        from steper_bench.generation.base import StepResult

        q = req.question
        answer = answer_clause(q.answer)
        sentences = [(title, clean_sentence(text)) for title, text in q.supporting_sentences if text.strip()]
        # Which gold sentences were already stated: the loop keeps our text verbatim.
        pending = [(t, s) for t, s in sentences if not any(p.startswith(s) for p in req.previous)]
        if req.must_answer or not pending:
            return StepResult(text=answer, extra={"grounded": None})
        seen = {p.title for p in req.context}
        title, text = next(((t, s) for t, s in pending if t in seen), pending[0])
        if len(pending) == 1:
            text = f"{text} {answer}"
        return StepResult(text=text, tokens=len(text.split()), extra={"grounded": title in seen})


FRAMEWORK = IRCoT()

"""MuSiQue-Ans v1.0: `id, paragraphs [{idx, title, paragraph_text, is_supporting}], question,
question_decomposition [{id, question, answer, paragraph_support_idx}], answer, answer_aliases,
answerable` (Hub: dgslibisey/MuSiQue; dict-of-lists nested fields are accepted too).

MuSiQue has no sentence-level annotation. We derive it, in reasoning order, from the
decomposition: for each step, its supporting paragraph and the first sentence of that paragraph
(split by `split_sentences`) that contains the step's answer, falling back to the first
sentence. `supporting_facts` holds (title, index of that sentence in our split);
`supporting_sentences` holds (title, sentence text); `decomposition` the sub-questions (with
MuSiQue's "#k" references to earlier answers), their answers and paragraph titles. Unanswerable records (MuSiQue-Full) are
rejected: the benchmark needs a gold answer.
"""

from __future__ import annotations

import re

from steper_bench.metrics import normalize_answer
from steper_bench.records import Paragraph, Question
from steper_bench.sources.base import DatasetSpec, RecordError, need, record_id, rows

# A sentence ends at . ! or ? followed by space and an upper-case letter, digit or quote.
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT_END.split(text.strip()) if s.strip()]


def _answer_sentence(sentences: list[str], answer: str) -> int:
    if answer:
        low, norm = answer.lower(), normalize_answer(answer)
        for i, s in enumerate(sentences):
            if low in s.lower():
                return i
        for i, s in enumerate(sentences):
            if norm and f" {norm} " in f" {normalize_answer(s)} ":
                return i
    return 0


def contexts(raw: dict) -> list[tuple[str, str]]:
    paras = rows(need(raw, "paragraphs", (list, dict, str)), "paragraphs")
    if not paras:
        raise RecordError("empty context")
    out = []
    for i, p in enumerate(paras):
        title, text = p.get("title"), p.get("paragraph_text")
        if not isinstance(title, str) or not isinstance(text, str):
            raise RecordError(f"paragraphs[{i}] needs string 'title' and 'paragraph_text'")
        out.append((title, text.strip()))
    return out


def parse(raw: dict, split: str) -> Question:
    qid = record_id(raw)
    if not qid:
        raise RecordError("missing field 'id'")
    question = need(raw, "question").strip()
    answer = need(raw, "answer")
    if raw.get("answerable") is False:
        raise RecordError("unanswerable question (MuSiQue-Full); use MuSiQue-Ans")
    aliases = raw.get("answer_aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise RecordError("field 'answer_aliases' should be a list of strings")
    paras = rows(need(raw, "paragraphs", (list, dict, str)), "paragraphs")
    paragraphs = [Paragraph(f"{qid}-{i}", title, text, bool(p.get("is_supporting")))
                  for i, ((title, text), p) in enumerate(zip(contexts(raw), paras))]

    facts, sentences, decomposition = [], [], []
    for step in rows(raw.get("question_decomposition") or [], "question_decomposition"):
        idx = step.get("paragraph_support_idx")
        if not isinstance(idx, int) or not 0 <= idx < len(paragraphs):
            continue
        para = paragraphs[idx]
        decomposition.append((str(step.get("question") or ""), str(step.get("answer") or ""), para.title))
        sents = split_sentences(para.text) or [para.text]
        j = _answer_sentence(sents, str(step.get("answer") or ""))
        facts.append((para.title, j))
        sentences.append((para.title, sents[j]))

    answers = [answer] + [a for a in dict.fromkeys(aliases) if a != answer]
    return Question(
        id=qid,
        dataset="musique",
        question=question,
        answers=answers,
        paragraphs=paragraphs,
        supporting_facts=facts,
        supporting_sentences=sentences,
        decomposition=decomposition,
        type=qid.split("__", 1)[0] if "__" in qid else "",
        split=split,
    )


CITATION = """@article{trivedi-etal-2022-musique,
  title = {{MuSiQue}: Multihop Questions via Single-hop Question Composition},
  author = {Trivedi, Harsh and Balasubramanian, Niranjan and Khot, Tushar and Sabharwal, Ashish},
  journal = {Transactions of the Association for Computational Linguistics},
  volume = {10},
  year = {2022},
  pages = {539--554}
}"""

DATASET = DatasetSpec(
    name="musique", parse=parse, hub_id="dgslibisey/MuSiQue",
    label="MuSiQue", title="MuSiQue", license="cc-by-4.0", citation=CITATION,
    demos={"ircot": "ircot/musique.json", "self-ask": "self-ask/musique.json"}, metric="musique",
    contexts=contexts,
)

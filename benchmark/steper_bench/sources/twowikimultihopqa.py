"""2WikiMultiHopQA v1.1: `_id, type, question, context [[title, [sentences]]], entity_ids,
supporting_facts [[title, sent_idx]], evidences, answer, evidences_id, answer_id`.

Unlike HotpotQA, sentences carry no leading space, so a paragraph joins them with " ". A few
supporting facts point one past the last sentence of their paragraph (a known quirk of the
release): they stay in supporting_facts and are left out of supporting_sentences. The evidence
triples become the decomposition (Self-Ask's silver chains).
"""

from __future__ import annotations

from dataclasses import replace

from steper_bench.records import Question
from steper_bench.sources.base import DatasetSpec, RecordError, titled_context_question, titled_contexts


def parse(raw: dict, split: str) -> Question:
    q = titled_context_question(raw, split, "2wikimultihopqa", joiner=" ")
    answer_id = raw.get("answer_id")
    return replace(q, decomposition=evidence_hops(raw.get("evidences") or []),
                   answer_id=answer_id if isinstance(answer_id, str) else "")


def evidence_hops(evidences) -> list[tuple[str, str, str]]:
    """2Wiki's evidence triples [subject, relation, object] as (sub-question, answer, title):
    "What is the <relation> of <subject>?" -> object, from the subject's paragraph (our wording)."""
    if not isinstance(evidences, list):
        raise RecordError("field 'evidences' should be a list of [subject, relation, object]")
    hops = []
    for i, e in enumerate(evidences):
        if not isinstance(e, (list, tuple)) or len(e) != 3 or not all(isinstance(x, str) for x in e):
            raise RecordError(f"evidences[{i}] should be [subject, relation, object]")
        subject, relation, obj = e
        hops.append((f"What is the {relation.replace('_', ' ')} of {subject}?", obj, subject))
    return hops


CITATION = """@inproceedings{ho-etal-2020-constructing,
  title = {Constructing A Multi-hop {QA} Dataset for Comprehensive Evaluation of Reasoning Steps},
  author = {Ho, Xanh and Duong Nguyen, Anh-Khoa and Sugawara, Saku and Aizawa, Akiko},
  booktitle = {Proceedings of the 28th International Conference on Computational Linguistics},
  year = {2020},
  pages = {6609--6625}
}"""

DATASET = DatasetSpec(
    name="2wikimultihopqa", parse=parse, hub_id="framolfese/2WikiMultihopQA",
    label="2Wiki", title="2WikiMultiHopQA", license="apache-2.0", citation=CITATION,
    demos={"ircot": "ircot/2wikimultihopqa.json", "self-ask": "self-ask/2wikimultihopqa.json"}, metric="2wikimultihopqa",
    contexts=lambda raw: titled_contexts(raw, " "),
)

"""2WikiMultiHopQA v1.1: `_id, type, question, context [[title, [sentences]]], entity_ids,
supporting_facts [[title, sent_idx]], evidences, answer, evidences_id, answer_id`.

Unlike HotpotQA, sentences carry no leading space, so a paragraph joins them with " ". A few
supporting facts point one past the last sentence of their paragraph (a known quirk of the
release): they stay in supporting_facts and are left out of supporting_sentences.
"""

from __future__ import annotations

from steper_bench.records import Question
from steper_bench.sources.base import DatasetSpec, titled_context_question


def parse(raw: dict, split: str) -> Question:
    return titled_context_question(raw, split, "2wikimultihopqa", joiner=" ")


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
    demos={"ircot": "ircot/2wikimultihopqa.json"}, metric="2wikimultihopqa",
)

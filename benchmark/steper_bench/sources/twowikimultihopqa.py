"""2WikiMultiHopQA v1.1: `_id, type, question, context [[title, [sentences]]], entity_ids,
supporting_facts [[title, sent_idx]], evidences, answer, evidences_id, answer_id`.

Unlike HotpotQA, sentences carry no leading space, so a paragraph joins them with " ". A few
supporting facts point one past the last sentence of their paragraph (a known quirk of the
release): they stay in supporting_facts and are left out of supporting_sentences.
"""

from __future__ import annotations

from steper_bench.records import Question
from steper_bench.sources.base import register, titled_context_question


@register("2wikimultihopqa", hub_id="framolfese/2WikiMultihopQA")
def parse(raw: dict, split: str) -> Question:
    return titled_context_question(raw, split, "2wikimultihopqa", joiner=" ")

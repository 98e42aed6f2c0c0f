"""HotpotQA (distractor format): `_id, question, answer, type, level, supporting_facts
[[title, sent_idx]], context [[title, [sentences]]]`; on the Hub (hotpotqa/hotpot_qa, config
distractor) `id` and dict-of-lists `context` / `supporting_facts`, which the helpers accept too.

Sentences after the first carry their leading space, so a paragraph is its sentences joined with
"" (this restores the Wikipedia text; a few sentence-split artifacts have no space and must not
get one).
"""

from __future__ import annotations

from steper_bench.records import Question
from steper_bench.sources.base import register, titled_context_question


@register("hotpotqa", hub_id="hotpotqa/hotpot_qa", hub_config="distractor")
def parse(raw: dict, split: str) -> Question:
    return titled_context_question(raw, split, "hotpotqa", joiner="")

"""HotpotQA (distractor format): `_id, question, answer, type, level, supporting_facts
[[title, sent_idx]], context [[title, [sentences]]]`; on the Hub (hotpotqa/hotpot_qa, config
distractor) `id` and dict-of-lists `context` / `supporting_facts`, which the helpers accept too.

Sentences after the first carry their leading space, so a paragraph is its sentences joined with
"" (this restores the Wikipedia text; a few sentence-split artifacts have no space and must not
get one).
"""

from __future__ import annotations

from steper_bench.records import Question
from steper_bench.sources.base import DatasetSpec, titled_context_question, titled_contexts


def parse(raw: dict, split: str) -> Question:
    return titled_context_question(raw, split, "hotpotqa", joiner="")


CITATION = """@inproceedings{yang-etal-2018-hotpotqa,
  title = {{HotpotQA}: A Dataset for Diverse, Explainable Multi-hop Question Answering},
  author = {Yang, Zhilin and Qi, Peng and Zhang, Saizheng and Bengio, Yoshua and Cohen, William and Salakhutdinov, Ruslan and Manning, Christopher D.},
  booktitle = {Proceedings of the 2018 Conference on Empirical Methods in Natural Language Processing},
  year = {2018},
  pages = {2369--2380}
}"""

DATASET = DatasetSpec(
    name="hotpotqa", parse=parse, hub_id="hotpotqa/hotpot_qa", hub_config="distractor",
    label="HotpotQA", title="HotpotQA", license="cc-by-sa-4.0", citation=CITATION,
    demos={"ircot": "ircot/hotpotqa.json", "self-ask": "self-ask/hotpotqa.json"}, metric="hotpotqa",
    contexts=lambda raw: titled_contexts(raw, ""),
)

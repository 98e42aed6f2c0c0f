"""Shared pieces of the source parsers: the registry, result records, errors and shape helpers.

A dataset is one module holding a `DatasetSpec` (named `DATASET`, listed in
steper_bench.registry; or registered with `register(spec)` from any module) whose parser turns one
raw record (a dict, from a local file or a Hub row) into a `records.Question`. Parsers raise
`RecordError` for a malformed record; the loader turns it into a `Skipped` entry or, in strict
mode, a `SourceError` naming file, line and id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from steper_bench.records import Paragraph, Question


class SourceError(ValueError):
    """A source problem a user can act on: the message names the file or Hub id and the fix."""


class RecordError(ValueError):
    """One raw record is malformed (missing field, wrong type, empty context...)."""


@dataclass(frozen=True)
class Skipped:
    line: int  # 1-based line in the file (JSONL / JSON array) or row number on the Hub
    id: str | None
    reason: str


@dataclass
class LoadResult:
    questions: list[Question]
    skipped: list[Skipped] = field(default_factory=list)
    path_or_id: str = ""  # the local file read, or "hub:<id>[/<config>]:<split>"
    revision: str | None = None  # local: sha256 of the file; Hub: the requested revision


Parser = Callable[[dict, str], Question]
ContextReader = Callable[[dict], list[tuple[str, str]]]  # raw record -> [(title, text)] as `parse` makes them


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the suite knows about one dataset, in one place (its registry entry).

    `demos` maps a framework name to a demonstrations file (JSON, see reasoning/prompts/README.md);
    `lm_eval_task` is the name of the lm-eval task generated for it (steper_bench.lm_eval)."""

    name: str
    parse: Parser  # (raw record, split) -> Question
    hub_id: str = ""  # default Hub dataset id ("" when it has none)
    hub_config: str | None = None
    label: str = ""  # short display name (tables)
    title: str = ""  # full name (cards)
    license: str = "other"  # Hub licence id of the records
    citation: str = ""  # BibTeX of the dataset's paper
    demos: dict[str, str] = field(default_factory=dict)  # framework -> demonstrations file
    metric: str = "hotpotqa"  # answer-metric rule in steper_bench.metrics (RULES)
    # A generated dataset (the synthetic world): (recipe's source.world settings, split) -> raw
    # records in the parser's format; it then needs no files and no Hub id.
    generate: Callable[[Any, str], list[dict]] | None = None
    # A record's paragraphs without the rest of `parse` (corpus.pool_splits / pool_files pool
    # records that may lack answers, e.g. test files); default: the parsed question's paragraphs.
    contexts: ContextReader | None = None

    def paragraphs(self, raw: dict) -> list[tuple[str, str]]:
        if self.contexts is not None:
            return self.contexts(raw)
        return [(p.title, p.text) for p in self.parse(raw, "pool").paragraphs]

    @property
    def lm_eval_task(self) -> str:
        return "steper_" + re.sub(r"[^A-Za-z0-9_]", "_", self.name)

    @property
    def display(self) -> str:
        return self.label or self.name


def records_jsonl(records: list[dict]) -> bytes:
    """Records as canonical JSONL (sorted keys, UTF-8): how a generated dataset is written and hashed."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()


def register(spec: DatasetSpec) -> DatasetSpec:
    """Register a dataset defined outside the package (a recipe's `imports:` module, a plugin)."""
    from steper_bench.registry import DATASETS

    return DATASETS.register(spec.name, spec)


# -- field access with errors a user can read ----------------------------------------------------


def record_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        v = raw.get("_id", raw.get("id"))
        return None if v is None else str(v)
    return None


def need(raw: dict, key: str, kind: type | tuple[type, ...] = str, *alts: str) -> Any:
    """raw[key] (or the first present alternative key), checked against `kind`."""
    for k in (key, *alts):
        if k in raw and raw[k] is not None:
            value = raw[k]
            break
    else:
        raise RecordError(f"missing field '{key}'")
    if kind is not None and not isinstance(value, kind):
        raise RecordError(f"field '{k}' should be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", list: "a list", dict: "an object", int: "an integer", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _maybe_json(value: Any) -> Any:
    # Some Hub exports store nested fields as JSON strings.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise RecordError("a nested field is a string that is not JSON") from None
    return value


def pairs(value: Any, what: str, first: str, seconds: tuple[str, ...]) -> list[tuple[Any, Any]]:
    """[[a, b], ...] (original files) or {first: [a...], second: [b...]} (Hub dict-of-lists)."""
    value = _maybe_json(value)
    if isinstance(value, dict):
        second = next((k for k in seconds if k in value), None)
        if first not in value or second is None:
            raise RecordError(f"field '{what}' has keys {sorted(value)}, expected '{first}' and '{seconds[0]}'")
        a, b = value[first], value[second]
        if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
            raise RecordError(f"field '{what}': '{first}' and '{second}' should be lists of equal length")
        return list(zip(a, b))
    if not isinstance(value, list):
        raise RecordError(f"field '{what}' should be a list, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise RecordError(f"field '{what}'[{i}] should be a [title, value] pair")
        out.append((item[0], item[1]))
    return out


def rows(value: Any, what: str) -> list[dict]:
    """[{...}, ...] (original files) or {key: [...], ...} (Hub dict-of-lists) -> list of dicts."""
    value = _maybe_json(value)
    if isinstance(value, dict):
        cols = list(value)
        n = len(value[cols[0]]) if cols else 0
        if any(not isinstance(value[c], list) or len(value[c]) != n for c in cols):
            raise RecordError(f"field '{what}' has columns of unequal length")
        return [{c: value[c][i] for c in cols} for i in range(n)]
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise RecordError(f"field '{what}' should be a list of objects")
    return value


def context_sentences(raw: dict) -> list[tuple[str, list[str]]]:
    """HotpotQA / 2Wiki context as [(title, [sentences])], from either shape; never empty."""
    ctx = pairs(need(raw, "context", (list, dict, str)), "context", "title", ("sentences", "content"))
    if not ctx:
        raise RecordError("empty context")
    out = []
    for i, (title, sents) in enumerate(ctx):
        if not isinstance(title, str) or not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
            raise RecordError(f"context[{i}] should be [title, [sentences]]")
        out.append((title, sents))
    return out


def supporting_facts(raw: dict) -> list[tuple[str, int]]:
    sf = pairs(need(raw, "supporting_facts", (list, dict, str)), "supporting_facts", "title", ("sent_id",))
    out = []
    for i, (title, idx) in enumerate(sf):
        if not isinstance(title, str) or isinstance(idx, bool) or not isinstance(idx, int):
            raise RecordError(f"supporting_facts[{i}] should be [title, sentence index]")
        out.append((title, idx))
    return out


def titled_contexts(raw: dict, joiner: str) -> list[tuple[str, str]]:
    """HotpotQA-style context as [(title, paragraph text)]: the sentences joined with `joiner`."""
    return [(t, joiner.join(s).strip()) for t, s in context_sentences(raw)]


def titled_context_question(raw: dict, split: str, dataset: str, joiner: str) -> Question:
    """HotpotQA-style record (context = titled sentence lists) -> Question.

    A paragraph is supporting when its title appears in supporting_facts. supporting_sentences
    follows supporting_facts' order; a fact whose sentence index is out of range (2Wiki has a
    few off-by-one indices) is left out of supporting_sentences but kept in supporting_facts.
    """
    qid = record_id(raw)
    if not qid:
        raise RecordError("missing field '_id'")
    question = need(raw, "question").strip()
    answer = need(raw, "answer")
    if not question:
        raise RecordError("empty question")
    ctx = context_sentences(raw)
    sf = supporting_facts(raw)
    sf_titles = {t for t, _ in sf}
    sentences = {}
    for title, sents in ctx:
        sentences.setdefault(title, sents)
    paragraphs = [
        Paragraph(pid=f"{qid}-{i}", title=t, text=text, is_supporting=t in sf_titles)
        for i, (t, text) in enumerate(titled_contexts(raw, joiner))
    ]
    support = [
        (t, sentences[t][i].strip())
        for t, i in sf
        if t in sentences and 0 <= i < len(sentences[t]) and sentences[t][i].strip()
    ]
    return Question(
        id=qid,
        dataset=dataset,
        question=question,
        answers=[answer],
        paragraphs=paragraphs,
        supporting_facts=sf,
        supporting_sentences=support,
        type=str(raw.get("type") or ""),
        split=split,
    )

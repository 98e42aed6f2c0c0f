"""Plain records that flow between stages: questions, steps, trajectories.

Every stage reads and writes these; they serialise to JSON with `to_dict` / `from_dict`
so that trajectories can be appended to JSONL and read back without loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


_ATOMS = (str, int, float, bool, type(None))


def _plain(x: Any) -> Any:
    """dataclasses.asdict without its deep copies (a build writes a trajectory per question,
    thousands a second): records hold str, numbers, bools, None, lists, tuples, dicts and records.
    Atoms are tested first: they are most of what a record holds, and `hasattr` on them is slow."""
    if type(x) in _ATOMS:
        return x
    if hasattr(x, "__dataclass_fields__"):
        return {name: _plain(getattr(x, name)) for name in x.__dataclass_fields__}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


@dataclass(frozen=True)
class Paragraph:
    """One retrievable paragraph. `pid` is stable across loads: `<question id>-<index>` for
    per-question contexts; pooled corpora keep the first pid seen for a (title, text) pair."""

    pid: str
    title: str
    text: str
    is_supporting: bool = False


@dataclass
class Question:
    id: str
    dataset: str  # hotpotqa | 2wikimultihopqa | musique
    question: str
    answers: list[str]  # gold answer first, then aliases
    paragraphs: list[Paragraph]
    supporting_facts: list[tuple[str, int]] = field(default_factory=list)  # (title, sentence index)
    # Gold supporting sentences in reasoning order, as (title, sentence text); used by the
    # supporting-facts silver teacher. Sources fill it from supporting_facts / decompositions.
    supporting_sentences: list[tuple[str, str]] = field(default_factory=list)
    type: str = ""  # bridge / comparison / 2hop / compositional ...
    split: str = ""
    # Gold decomposition in reasoning order, as (sub-question, answer, supporting paragraph title):
    # MuSiQue's question_decomposition, 2Wiki's evidences; empty for HotpotQA. Used by the
    # supporting-facts silver teacher for question-decomposition frameworks (Self-Ask).
    decomposition: list[tuple[str, str, str]] = field(default_factory=list)
    answer_id: str = ""  # 2WikiMultiHopQA: the answer's Wikidata id (source.aliases_file keys on it)

    @property
    def answer(self) -> str:
        return self.answers[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Question:
        d = dict(d)
        d["paragraphs"] = [Paragraph(**p) for p in d["paragraphs"]]
        d["supporting_facts"] = [tuple(x) for x in d.get("supporting_facts", [])]
        d["supporting_sentences"] = [tuple(x) for x in d.get("supporting_sentences", [])]
        d["decomposition"] = [tuple(x) for x in d.get("decomposition", [])]
        return cls(**d)


@dataclass
class GeneratorIdentity:
    """Who produced a text: enough to reproduce it and to key the request cache."""

    backend: str  # openai | transformers | supporting-facts
    model: str
    base_url: str = ""
    revision: str = ""

    def label(self) -> str:
        return self.model if not self.base_url else f"{self.model}@{self.base_url}"


@dataclass
class Step:
    index: int  # 1-based
    query: str
    retrieved_pids: list[str]  # top-K of this step's retrieval
    new_pids: list[str]  # retrieved here and not seen before (after dedup and cap)
    context_pids: list[str]  # everything the generator saw at this step, in prompt order
    prompt_hash: str
    reasoning: str  # the one generated sentence ("" when the step failed)
    latency_s: float = 0.0
    tokens: int = 0
    grounded: bool | None = None  # supporting-facts teacher: was the sentence's paragraph seen?
    error: str = ""  # non-empty when the step failed after retries
    cached: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Trajectory:
    question_id: str
    dataset: str
    split: str
    question: str
    answers: list[str]
    generator: GeneratorIdentity
    steps: list[Step]
    paragraphs: dict[str, Paragraph]  # every paragraph any step saw, by pid
    prediction: str  # extracted final answer ("" if none)
    stop_reason: str  # answered | max_steps | empty (the model said nothing) | failed (an error)
    em: float = 0.0
    f1: float = 0.0
    acc: float = 0.0
    recipe_hash: str = ""

    @property
    def reasoning(self) -> list[str]:
        return [s.reasoning for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        d = _plain(self)
        d["paragraphs"] = list(d["paragraphs"].values())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        d = dict(d)
        d["generator"] = GeneratorIdentity(**d["generator"])
        d["steps"] = [Step.from_dict(s) for s in d["steps"]]
        d["paragraphs"] = {p["pid"]: Paragraph(**p) for p in d["paragraphs"]}
        return cls(**d)

"""Step prompts: templates, demonstrations and the one renderer behind every framework.

A framework (reasoning/frameworks/) names its packaged Jinja2 template (`prompts/<framework>/
step.j2`) and which demonstrations of a dataset it uses (the dataset spec's `demos`); the loop
and the step-wise dataset builder both turn (question, paragraphs, previous steps) into text
through `LoopSettings.prompt`, which calls `render_step` here, so a student is trained on exactly
the form it is evaluated on.

The templates and the few-shot demonstrations (in `prompts/`) are our choice: the StepER paper
does not publish its prompts. IRCoT's follow IRCoT's published form, Self-Ask's Press et al.'s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from steper_bench.recipe import RecipeError
from steper_bench.records import Paragraph

PROMPTS_DIR = Path(__file__).with_name("prompts")
ANSWER_PREFIX = "So the answer is:"


@dataclass(frozen=True)
class Demo:
    """One worked example: paragraphs, question, and its chain (one sentence per step)."""

    question: str
    paragraphs: tuple[Paragraph, ...]
    reasoning: tuple[str, ...]
    answer: str
    qid: str = ""


@lru_cache(maxsize=16)
def packaged_template(name: str) -> str:
    """A packaged template's source, by its path under prompts/ (e.g. "ircot/step.j2")."""
    return (PROMPTS_DIR / name).read_text(encoding="utf-8")


def load_template(path: str | Path) -> str:
    """A user template's source (framework.prompt_template), compiled once to fail early."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"prompt template not found: {p} (framework.prompt_template is resolved relative to "
            "the recipe's folder; remove the field to use the packaged default)"
        )
    source = p.read_text(encoding="utf-8")
    _compile(source)  # fail now, naming the file, rather than at the first step
    return source


@lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"prompt template syntax error on line {e.lineno}: {e.message}") from e


@lru_cache(maxsize=16)
def _demo_file(dataset: str, key: str) -> tuple[Demo, ...] | None:
    """The demonstrations file the dataset's spec names for `key` (a framework's demos key);
    None when it names none. Relative paths are under prompts/."""
    from steper_bench.sources import get_spec

    ref = get_spec(dataset).demos.get(key)
    if ref is None:
        return None
    path = Path(ref) if Path(ref).is_absolute() else PROMPTS_DIR / ref
    raw = json.loads(path.read_text(encoding="utf-8"))["demos"]
    return tuple(
        Demo(
            question=d["question"],
            paragraphs=tuple(
                Paragraph(pid=f"demo-{d['qid']}-{i}", title=p["title"], text=p["text"])
                for i, p in enumerate(d["paragraphs"])
            ),
            reasoning=tuple(d["reasoning"]),
            answer=d["answer"],
            qid=d["qid"],
        )
        for d in raw
    )


class FewShotError(RecipeError, ValueError):
    """More demonstrations asked for than are packaged: a recipe error naming the field."""


def load_demos(n: int, dataset: str = "hotpotqa", *, key: str = "ircot", field: str = "few_shot") -> list[Demo]:
    """The first `n` demonstrations of `dataset` for a framework's demos `key`. `field` names the
    recipe field `n` came from, for the error message. None asked for: none loaded."""
    if n == 0:
        return []
    demos = _demo_file(dataset, key)
    if demos is None:
        raise FewShotError(
            f"{field}: {n} few-shot demonstrations asked for, but dataset {dataset!r} has no {key} "
            f"demonstrations (its spec's demos: {sorted(_spec_demos(dataset)) or 'none'}); set {field}: 0, "
            f"or add a demonstrations file to the dataset's spec (demos={{{key!r}: 'path.json'}})"
        )
    if n > len(demos):
        raise FewShotError(
            f"{field}: asked for {n} few-shot demonstrations, {len(demos)} are packaged for {dataset} "
            f"(allowed maximum: {len(demos)}); set {field} to {len(demos)} or less"
        )
    return list(demos[:n])


def _spec_demos(dataset: str) -> dict:
    from steper_bench.sources import get_spec

    return get_spec(dataset).demos


def demo_question_ids(dataset: str = "hotpotqa") -> set[str]:
    """Ids of the questions any of the dataset's demonstrations were written from (left out of
    builds, whichever framework runs)."""
    return {d.qid for key in _spec_demos(dataset) for d in (_demo_file(dataset, key) or ())}


def truncate(text: str, chars: int) -> str:
    """Cut a paragraph to about `chars` characters at a word boundary."""
    text = text.strip()
    if len(text) <= chars:
        return text
    cut = text[:chars]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return head.rstrip() + " ..."


def _para_view(paragraphs: Sequence[Paragraph], chars: int) -> list[dict[str, str]]:
    return [{"title": p.title, "text": truncate(p.text, chars)} for p in paragraphs]


def render_step(
    question: str,
    paragraphs: Sequence[Paragraph],
    previous: Sequence[str],
    *,
    template: str,
    demos: Sequence[Demo] = (),
    paragraph_chars: int = 1200,
    must_answer: bool = False,
) -> str:
    """Render a step template (source text). Variables: demos (question, paragraphs,
    reasoning), paragraphs (title, text: truncated to `paragraph_chars`), question, previous (the
    steps so far), must_answer (the forced aggregation step after max_steps: the template adds
    its "answer now" line). The step-wise builder sets must_answer for exactly the steps the
    loop forced, so training and evaluation prompts have one form."""
    return _compile(template).render(
        demos=[
            {
                "question": d.question,
                "paragraphs": _para_view(d.paragraphs, paragraph_chars),
                "reasoning": list(d.reasoning),
            }
            for d in demos
        ],
        paragraphs=_para_view(paragraphs, paragraph_chars),
        question=question.strip(),
        previous=[s.strip() for s in previous],
        must_answer=must_answer,
    )


def prompt_hash(prompt: str) -> str:
    """Short, stable id of a prompt text (sha256, 16 hex digits)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]

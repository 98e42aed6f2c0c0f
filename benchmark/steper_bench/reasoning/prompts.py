"""Step prompts: one renderer shared by the multi-step loop and the step-wise dataset builder.

The prompt for step t shows the paragraphs gathered so far and ends with `A:` followed by the
reasoning sentences R1..R(t-1); the model's completion is " " + R(t). Because training examples
and evaluation prompts come from the same `render_step`, a student is trained on exactly the form
it is evaluated on.

The template and the few-shot demonstrations (in `prompts/`) are our choice: the StepER paper
does not publish its prompts. They follow IRCoT's published form.
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
DEFAULT_TEMPLATE = PROMPTS_DIR / "ircot" / "step.j2"
ANSWER_PREFIX = "So the answer is:"


@dataclass(frozen=True)
class Demo:
    """One worked example: paragraphs, question, and its chain (one sentence per step)."""

    question: str
    paragraphs: tuple[Paragraph, ...]
    reasoning: tuple[str, ...]
    answer: str
    qid: str = ""


def load_template(path: str | Path | None) -> str:
    """Template source: the packaged default when `path` is None, else that file's text."""
    if path is None:
        return DEFAULT_TEMPLATE.read_text(encoding="utf-8")
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


@lru_cache(maxsize=8)
def _demo_file(dataset: str, framework: str = "ircot") -> tuple[Demo, ...]:
    from steper_bench.sources import get_spec

    ref = get_spec(dataset).demos.get(framework)
    if ref is None:
        return ()
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


def load_demos(n: int, dataset: str = "hotpotqa", *, field: str = "few_shot") -> list[Demo]:
    """The first `n` packaged demonstrations for `dataset` (HotpotQA's when it has none).
    `field` names the recipe field `n` came from, for the error message."""
    demos = _demo_file(dataset)
    if n > len(demos):
        raise FewShotError(
            f"{field}: asked for {n} few-shot demonstrations, {len(demos)} are packaged for {dataset} "
            f"(allowed maximum: {len(demos)}); set {field} to {len(demos)} or less"
        )
    return list(demos[:n])


def demo_question_ids(dataset: str = "hotpotqa") -> set[str]:
    """Ids of the questions the demonstrations were written from (exclude them from builds)."""
    return {d.qid for d in _demo_file(dataset)}


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
    demos: Sequence[Demo] = (),
    template: str | None = None,
    paragraph_chars: int = 1200,
    must_answer: bool = False,
) -> str:
    """The prompt for the next reasoning sentence.

    Ends with "A:" + (" " + " ".join(previous) if previous). `must_answer` marks the forced
    aggregation step after max_steps: it adds one instruction line asking for
    "So the answer is: <answer>.". The step-wise builder sets it for exactly the steps the loop
    forced (index > max_steps), so training and evaluation prompts have one form.
    """
    source = template if template is not None else _default_source()
    return _compile(source).render(
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


@lru_cache(maxsize=1)
def _default_source() -> str:
    return load_template(None)


def prompt_hash(prompt: str) -> str:
    """Short, stable id of a prompt text (sha256, 16 hex digits)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]

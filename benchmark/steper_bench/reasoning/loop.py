"""The multi-step retrieval-augmented reasoning loop (IRCoT), shared by teacher and student.

Step 1 retrieves top-K with the question; step t retrieves with the last reasoning sentence.
New paragraphs join the context (deduplicated by pid, capped at max_paragraphs, earlier ones
kept). Each step generates one sentence. A question stops when a sentence states an answer
("So the answer is: X"); after max_steps one forced aggregation step (no retrieval, same
context) must answer. All active questions move together: one retrieval batch and one
generation batch per step, so backends can batch and run concurrently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from steper_bench import metrics
from steper_bench.generation.base import Generator, StepRequest, StepResult
from steper_bench.reasoning.answers import extract_answer, first_sentence
from steper_bench.reasoning.prompts import Demo, load_demos, load_template, prompt_hash, render_step
from steper_bench.records import Paragraph, Question, Step, Trajectory
from steper_bench.retrieval.base import Retriever


@dataclass
class LoopSettings:
    top_k: int = 4
    max_paragraphs: int = 15
    max_steps: int = 5
    few_shot: int = 0
    max_new_tokens: int = 64
    paragraph_chars: int = 1200
    template: str | None = None  # template source text; None: the packaged default
    demos: list[Demo] | None = None  # None: the first `few_shot` packaged demonstrations

    @classmethod
    def from_recipe(cls, recipe, role: str) -> LoopSettings:
        """Settings for the teacher (build; framework.few_shot) or a student (eval.few_shot)."""
        if role not in ("teacher", "student"):
            raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
        fw = recipe.framework
        template = None
        if fw.prompt_template:
            template = load_template(recipe.resolve_path(fw.prompt_template))
        teacher = role == "teacher"
        return cls(
            top_k=recipe.corpus.top_k,
            max_paragraphs=recipe.corpus.max_paragraphs,
            max_steps=fw.max_steps,
            few_shot=fw.few_shot if teacher else recipe.eval.few_shot,
            max_new_tokens=fw.max_new_tokens if teacher else (recipe.eval.max_new_tokens or fw.max_new_tokens),
            paragraph_chars=fw.paragraph_chars,
            template=template,
            demos=load_demos(
                fw.few_shot if teacher else recipe.eval.few_shot,
                recipe.source.dataset,
                field="framework.few_shot" if teacher else "eval.few_shot",
            ),
        )

    def demo_list(self) -> list[Demo]:
        return self.demos if self.demos is not None else load_demos(self.few_shot)


def step_prompt(
    question: str, context: Sequence[Paragraph], previous: Sequence[str], index: int, settings: LoopSettings
) -> str:
    """The prompt of step `index` (1-based): the one place the loop and the step-wise builder
    turn (question, context, previous sentences) into text. Steps past max_steps are forced."""
    return render_step(
        question,
        list(context),
        list(previous),
        demos=settings.demo_list(),
        template=settings.template,
        paragraph_chars=settings.paragraph_chars,
        must_answer=index > settings.max_steps,
    )


def trajectory_step_prompt(traj: Trajectory, index: int, settings: LoopSettings) -> str:
    """Rebuild the prompt a trajectory's step `index` saw (its hash matches Step.prompt_hash)."""
    step = traj.steps[index - 1]
    context = [traj.paragraphs[pid] for pid in step.context_pids]
    return step_prompt(traj.question, context, traj.reasoning[: index - 1], index, settings)


@dataclass
class _State:
    question: Question
    context: dict[str, Paragraph] = field(default_factory=dict)  # pid -> paragraph, prompt order
    seen: dict[str, Paragraph] = field(default_factory=dict)  # everything retrieved
    steps: list[Step] = field(default_factory=list)
    prediction: str = ""
    stop_reason: str = ""

    @property
    def previous(self) -> list[str]:
        return [s.reasoning for s in self.steps]


def run_loop(
    questions: Sequence[Question],
    retriever: Retriever,
    generator: Generator,
    settings: LoopSettings,
    *,
    on_finished: Callable[[list[Trajectory]], None] | None = None,
    progress: bool = True,
    recipe_hash: str = "",
) -> list[Trajectory]:
    """Run every question to an answer, max_steps + 1 forced step, or a failure.

    Returns trajectories in input order; `on_finished` receives each step's batch of finished
    trajectories as soon as they finish (for append + flush, so an interrupted build resumes).
    """
    states = [_State(q) for q in questions]
    done: dict[int, Trajectory] = {}
    with _Progress(len(states), generator, enabled=progress) as bar:
        for index in range(1, settings.max_steps + 2):
            active = [i for i, s in enumerate(states) if not s.stop_reason]
            if not active:
                break
            bar.step(index)
            forced = index > settings.max_steps
            retrieved = {} if forced else _retrieve(states, active, index, retriever, settings)
            _generate(states, active, index, retrieved, generator, settings)
            finished = []
            for i in active:
                if states[i].stop_reason:
                    done[i] = _trajectory(states[i], generator, recipe_hash)
                    finished.append(done[i])
            bar.finished(len(finished), sum(1 for t in finished if t.stop_reason == "failed"))
            if finished and on_finished is not None:
                on_finished(finished)
    return [done[i] for i in range(len(states))]


def _query(state: _State, index: int) -> str:
    return state.question.question if index == 1 else state.steps[-1].reasoning


def _retrieve(
    states: list[_State], active: list[int], index: int, retriever: Retriever, settings: LoopSettings
) -> dict[int, tuple[str, list[Paragraph]]]:
    """One batched retrieval for the active questions: i -> (query, top-K)."""
    queries = {i: _query(states[i], index).strip() for i in active}
    asked = [i for i in active if queries[i]]
    results = (
        retriever.retrieve([queries[i] for i in asked], settings.top_k, [states[i].question.id for i in asked])
        if asked
        else []
    )
    if len(results) != len(asked):
        raise RuntimeError(f"retriever returned {len(results)} result lists for {len(asked)} queries")
    out = {i: (queries[i], []) for i in active}
    out.update({i: (queries[i], list(r)) for i, r in zip(asked, results)})
    return out


def _add_paragraphs(state: _State, found: list[Paragraph], cap: int) -> list[str]:
    """Append new paragraphs (dedup by pid, earlier ones kept, up to `cap`); the pids added."""
    new = []
    for p in found:
        state.seen.setdefault(p.pid, p)
        if p.pid not in state.context and len(state.context) < cap:
            state.context[p.pid] = p
            new.append(p.pid)
    return new


def _generate(
    states: list[_State],
    active: list[int],
    index: int,
    retrieved: dict[int, tuple[str, list[Paragraph]]],
    generator: Generator,
    settings: LoopSettings,
) -> None:
    forced = index > settings.max_steps
    pending: list[tuple[int, Step, StepRequest]] = []
    for i in active:
        st = states[i]
        query, found = retrieved.get(i, ("", []))
        new = _add_paragraphs(st, found, settings.max_paragraphs) if found else []
        context = list(st.context.values())
        prompt = step_prompt(st.question.question, context, st.previous, index, settings)
        step = Step(
            index=index, query=query, retrieved_pids=[p.pid for p in found], new_pids=new,
            context_pids=[p.pid for p in context], prompt_hash=prompt_hash(prompt), reasoning="",
        )
        # IRCoT goes on with what it has when a later query finds nothing new; a step with no
        # paragraphs at all has nothing to reason over and fails.
        if not forced and not context:
            step.error = "empty query" if not query else "retrieval returned no paragraphs"
            _stop(st, step, "failed")
            continue
        req = StepRequest(prompt=prompt, question=st.question, context=context, previous=st.previous,
                          must_answer=forced)
        pending.append((i, step, req))
    if not pending:
        return
    results = generator.generate([r for _, _, r in pending])
    if len(results) != len(pending):
        raise RuntimeError(f"generator returned {len(results)} results for {len(pending)} requests")
    for (i, step, _), res in zip(pending, results):
        _record(states[i], step, res, forced)


def _record(state: _State, step: Step, res: StepResult, forced: bool) -> None:
    step.latency_s, step.tokens, step.cached = res.latency_s, res.tokens, res.cached
    step.grounded = (res.extra or {}).get("grounded")
    if res.error:
        step.error = res.error
        _stop(state, step, "failed")
        return
    step.reasoning = first_sentence(res.text or "")
    if not step.reasoning:
        # The model answered with nothing: its behaviour, not an infrastructure failure (which
        # comes back as res.error), so it is not retried on a re-run.
        _stop(state, step, "empty")
        return
    answer = extract_answer(step.reasoning)
    if answer is not None:
        state.prediction = answer
        _stop(state, step, "answered")
    elif forced:
        _stop(state, step, "max_steps")
    else:
        state.steps.append(step)


def _stop(state: _State, step: Step, reason: str) -> None:
    state.steps.append(step)
    state.stop_reason = reason


def _trajectory(state: _State, generator: Generator, recipe_hash: str) -> Trajectory:
    q = state.question
    scores = metrics.score(state.prediction, q.answers)
    return Trajectory(
        question_id=q.id, dataset=q.dataset, split=q.split, question=q.question, answers=list(q.answers),
        generator=generator.identity, steps=state.steps, paragraphs=dict(state.seen),
        prediction=state.prediction, stop_reason=state.stop_reason, recipe_hash=recipe_hash, **scores,
    )


class _Progress:
    """Rich progress: questions done/total, current step, requests/s, cache hits, errors."""

    def __init__(self, total: int, generator, enabled: bool):
        self.total, self.generator, self.enabled = total, generator, enabled
        self.done = self.failed = 0
        self.index = 0
        self.t0 = time.perf_counter()
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
            from rich.text import Text

            loop_progress = self

            class Live(ProgressColumn):  # read on every redraw: requests move during a long step too
                def render(self, task):
                    return Text(loop_progress._info())

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), Live(), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("questions", total=self.total)
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def step(self, index: int) -> None:
        self.index = index
        self._refresh()

    def finished(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)

    def _info(self) -> str:
        stats = getattr(self.generator, "stats", {})
        # HTTP calls as they go out (retries included); local backends: requests not served by the cache
        called = stats.get("calls", stats.get("requests", 0) - stats.get("cache_hits", 0))
        rate = called / max(time.perf_counter() - self.t0, 1e-9)
        return (f"step {self.index} | {rate:.1f} req/s | cache hits {stats.get('cache_hits', 0)} | "
                f"errors {stats.get('errors', 0)} | failed {self.failed}")

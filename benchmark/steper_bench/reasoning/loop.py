"""The multi-step retrieval-augmented reasoning loop, shared by teacher and student and by
every framework (reasoning/frameworks/: IRCoT, Self-Ask, single-step, no-retrieval).

Per step, for all active questions at once: the framework forms each retrieval query (IRCoT:
the question, then the last sentence); new paragraphs join the context (deduplicated by pid,
capped at max_paragraphs, earlier ones kept); the framework's prompt goes to the generator as one
batch, with the framework's stop sequences; the framework cuts each generation to one step and
says whether it ends the chain with an answer. After the framework's last step (max_steps, or
its fixed count) a framework with `forced_answer` gets one more step, with no retrieval and the
same context, that must answer.

Two drivers, one set of rules. A batch backend (local model, supporting facts) gets one
retrieval batch and one generation batch per step, for all active questions. A streaming backend
(`generator.streaming`: the OpenAI-compatible one) gets each question's next step as soon as its
last one comes back (retrieval batched over the answers that arrived together), so the endpoint
never waits for a step's slowest request or for the client's work between steps. A question's
chain depends on nothing but its own steps, so both give the same trajectories.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from steper_bench import metrics
from steper_bench.generation.base import Generator, StepRequest, StepResult
from steper_bench.reasoning.frameworks import Framework, get_framework
from steper_bench.reasoning.prompts import Demo, load_demos, load_template, packaged_template, prompt_hash, render_step
from steper_bench.records import Paragraph, Question, Step, Trajectory
from steper_bench.retrieval.base import Retriever


def _ircot() -> Framework:
    return get_framework("ircot")


@dataclass
class LoopSettings:
    framework: Framework = field(default_factory=_ircot)
    top_k: int = 4
    max_paragraphs: int = 15
    max_steps: int = 5
    max_new_tokens: int = 64
    paragraph_chars: int = 1200
    template: str | None = None  # template source text; None: the framework's packaged one
    demos: list[Demo] = field(default_factory=list)  # shown before the question (few-shot)
    query_rule: str = "last-sentence"  # ircot: IRCoT's own query rule (frameworks/ircot.py)

    @classmethod
    def from_recipe(cls, recipe, role: str, *, few_shot: int | None = None) -> LoopSettings:
        """Settings for the teacher (build; framework.few_shot) or a student (eval.few_shot, or
        `few_shot` for one model entry; 0 for the step-wise training prompts)."""
        if role not in ("teacher", "student"):
            raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
        fw_cfg = recipe.framework
        framework = get_framework(fw_cfg.name)
        teacher = role == "teacher"
        if few_shot is None:
            few_shot = fw_cfg.few_shot if teacher else recipe.eval.few_shot
        field_name = "framework.few_shot" if teacher else "eval.few_shot"
        demos = load_demos(few_shot, recipe.source.dataset, key=framework.demos_key, field=field_name)
        return cls(
            framework=framework,
            top_k=recipe.corpus.top_k,
            max_paragraphs=recipe.corpus.max_paragraphs,
            max_steps=fw_cfg.max_steps,
            max_new_tokens=fw_cfg.max_new_tokens if teacher else (recipe.eval.max_new_tokens or fw_cfg.max_new_tokens),
            paragraph_chars=fw_cfg.paragraph_chars,
            template=load_template(recipe.resolve_path(fw_cfg.prompt_template)) if fw_cfg.prompt_template else None,
            demos=framework.prepare_demos(demos),
            query_rule=fw_cfg.query,
        )

    @property
    def steps(self) -> int:
        """Steps with retrieval before the forced one."""
        return self.framework.steps(self.max_steps)

    @property
    def last_index(self) -> int:
        """The last step a question can take: the forced answer step, if the framework has one."""
        return self.steps + (1 if self.framework.forced_answer else 0)

    def forced(self, index: int) -> bool:
        return index > self.steps

    def prompt(self, question: str, context: Sequence[Paragraph], previous: Sequence[str], index: int) -> str:
        """The prompt of step `index` (1-based): the one place the loop and the step-wise builder
        turn (question, context, previous steps) into text."""
        return render_step(
            question, list(context), list(previous), demos=self.demos,
            template=self.template if self.template is not None else packaged_template(self.framework.template),
            paragraph_chars=self.paragraph_chars, must_answer=self.forced(index),
        )


def trajectory_step_prompt(traj: Trajectory, index: int, settings: LoopSettings) -> str:
    """Rebuild the prompt a trajectory's step `index` saw (its hash matches Step.prompt_hash when
    `settings` are the ones it ran with)."""
    step = traj.steps[index - 1]
    context = [traj.paragraphs[pid] for pid in step.context_pids]
    return settings.prompt(traj.question, context, traj.reasoning[: index - 1], index)


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
    """Run every question to an answer, its last step (see LoopSettings.last_index), or a failure.

    Returns trajectories in input order; `on_finished` receives each batch of finished
    trajectories as soon as they finish (for append + flush, so an interrupted build resumes).
    """
    states = [_State(q) for q in questions]
    done: dict[int, Trajectory] = {}
    driver = _Streaming(generator) if getattr(generator, "streaming", False) else _Batch(generator)
    with _Progress(len(states), generator, enabled=progress) as bar:
        ready = list(range(len(states)))  # questions whose next step is to be sent
        while ready or driver.pending:
            if ready:
                bar.step(max(len(states[i].steps) + 1 for i in ready))
                pending = _next_steps(states, ready, retriever, settings)
                driver.submit(pending)
            ready, finished = [], []
            for i, step, res in driver.results():
                _record(states[i], step, res, settings.framework, step.index >= settings.last_index)
                (finished if states[i].stop_reason else ready).append(i)
            finished = sorted(finished + driver.stopped)  # question order within a batch
            driver.stopped = []
            for i in finished:
                done[i] = _trajectory(states[i], generator, recipe_hash)
            bar.finished(len(finished), sum(1 for i in finished if done[i].stop_reason == "failed"))
            if finished and on_finished is not None:
                on_finished([done[i] for i in finished])
    return [done[i] for i in range(len(states))]


class _Batch:
    """One generate() call per submitted group: the step-synchronous loop."""

    def __init__(self, generator: Generator):
        self.generator, self.ready, self.stopped = generator, [], []

    @property
    def pending(self) -> bool:
        return bool(self.ready)

    def submit(self, pending: _Pending) -> None:
        self.stopped += pending.stopped
        if pending.requests:
            results = self.generator.generate([r for _, _, r in pending.requests])
            if len(results) != len(pending.requests):
                raise RuntimeError(f"generator returned {len(results)} results for {len(pending.requests)} requests")
            self.ready += [(i, step, res) for (i, step, _), res in zip(pending.requests, results)]

    def results(self) -> list[tuple[int, Step, StepResult]]:
        out, self.ready = self.ready, []
        return out


class _Streaming:
    """Requests go out as they are formed; results come back as they arrive (generator.submit
    with tags, generator.completed() -> [(tag, result)], blocking until at least one)."""

    def __init__(self, generator: Generator):
        self.generator, self.steps, self.stopped = generator, {}, []

    @property
    def pending(self) -> bool:
        return bool(self.steps)

    def submit(self, pending: _Pending) -> None:
        self.stopped += pending.stopped
        for i, step, _ in pending.requests:
            self.steps[i] = step
        if pending.requests:
            self.generator.submit([r for _, _, r in pending.requests], [i for i, _, _ in pending.requests])

    def results(self) -> list[tuple[int, Step, StepResult]]:
        if not self.steps:
            return []
        return [(i, self.steps.pop(i), res) for i, res in self.generator.completed()]


@dataclass
class _Pending:
    requests: list[tuple[int, Step, StepRequest]] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)  # failed before a request (nothing to reason over)


def _next_steps(states: list[_State], ready: list[int], retriever: Retriever, settings: LoopSettings) -> _Pending:
    """The next step of each ready question: one retrieval batch (for those whose step
    searches), then each prompt."""
    fw = settings.framework
    index = {i: len(states[i].steps) + 1 for i in ready}
    searching = [i for i in ready if fw.retrieves and not settings.forced(index[i])]
    retrieved = _retrieve(states, searching, index, retriever, settings) if searching else {}
    out = _Pending()
    for i in ready:
        st, forced = states[i], settings.forced(index[i])
        query, found = retrieved.get(i, ("", []))
        new = _add_paragraphs(st, found, settings.max_paragraphs) if found else []
        context = list(st.context.values())
        prompt = settings.prompt(st.question.question, context, st.previous, index[i])
        step = Step(
            index=index[i], query=query, retrieved_pids=[p.pid for p in found], new_pids=new,
            context_pids=[p.pid for p in context], prompt_hash=prompt_hash(prompt), reasoning="",
        )
        # IRCoT goes on with what it has when a later query finds nothing new; a retrieving step
        # with no paragraphs at all has nothing to reason over and fails.
        if fw.retrieves and not forced and not context:
            step.error = "empty query" if not query else "retrieval returned no paragraphs"
            _stop(st, step, "failed")
            out.stopped.append(i)
            continue
        req = StepRequest(prompt=prompt, question=st.question, context=context, previous=st.previous,
                          must_answer=forced, stop=list(fw.stop), complete=fw.complete, framework=fw)
        out.requests.append((i, step, req))
    return out


def _retrieve(
    states: list[_State], active: list[int], index: dict[int, int], retriever: Retriever, settings: LoopSettings
) -> dict[int, tuple[str, list[Paragraph]]]:
    """One batched retrieval for the active questions (each at its own step): i -> (query, top-K)."""
    fw = settings.framework
    queries = {i: fw.query(states[i].question, states[i].previous, index[i], settings).strip() for i in active}
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


def _record(state: _State, step: Step, res: StepResult, fw: Framework, last: bool) -> None:
    step.latency_s, step.tokens, step.cached = res.latency_s, res.tokens, res.cached
    step.grounded = (res.extra or {}).get("grounded")
    if res.error:
        step.error = res.error
        _stop(state, step, "failed")
        return
    step.reasoning = fw.parse_step(res.text or "")
    if not step.reasoning:
        # The model answered with nothing: its behaviour, not an infrastructure failure (which
        # comes back as res.error), so it is not retried on a re-run.
        _stop(state, step, "empty")
        return
    answer = fw.answer(step.reasoning)
    if answer is not None:
        state.prediction = answer
        _stop(state, step, "answered")
    elif last:
        _stop(state, step, "max_steps")
    else:
        state.steps.append(step)


def _stop(state: _State, step: Step, reason: str) -> None:
    state.steps.append(step)
    state.stop_reason = reason


def _trajectory(state: _State, generator: Generator, recipe_hash: str) -> Trajectory:
    q = state.question
    scores = metrics.score(state.prediction, q.answers, metrics.rule_for(q.dataset))
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
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=8), MofNCompleteColumn(),
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
        counts = {"cached": stats.get("cache_hits", 0), "errors": stats.get("errors", 0), "failed": self.failed}
        extra = "".join(f" · {k} {v}" for k, v in counts.items() if v)  # zeros left out: the line fits 80 columns
        eps = self.generator.endpoints() if hasattr(self.generator, "endpoints") else []
        if len(eps) > 1:  # replicas: how many are in service, and the calls each has taken
            extra += f" · up {sum(e['up'] for e in eps)}/{len(eps)} ({'/'.join(str(e['calls']) for e in eps)})"
        return f"step {self.index} · {rate:.0f} req/s{extra}"

"""`steper-bench run`: build -> train -> eval (-> judge) from one recipe.

Each stage already resumes and skips finished work by itself (build: finished questions;
train: a finished model for the same train hash; eval: a finished run id in the database);
this module only orders the stages, decides whether the judge can run, honours `--force` and
collects the timings for `--profile`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from steper_bench.recipe import Recipe
from steper_bench.runs import RunPaths

STAGES = ("build", "train", "eval", "judge")


@dataclass
class StageReport:
    stage: str
    what: str  # e.g. "steper" or the model spec
    status: str  # done | skipped | failed
    seconds: float
    detail: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # profile: phase -> seconds
    endpoints: list[dict] = field(default_factory=list)  # profile: per endpoint url, calls, ok, failed, ...


@dataclass
class RunReport:
    stages: list[StageReport] = field(default_factory=list)
    results: list = field(default_factory=list)  # (system label, EvalResult) per evaluation
    where: dict[str, str] = field(default_factory=dict)  # what -> path (dataset, models, DB)
    db: str = ""
    seconds: float = 0.0

    def add(self, report: StageReport, say: Callable[[str], None]) -> None:
        self.stages.append(report)
        say(f"[{report.stage}] {report.what}: {report.status} in {report.seconds:.1f}s"
            + (f" - {report.detail}" if report.detail else ""))


def parse_force(force: set[str] | list[str]) -> set[str]:
    """The stages `--force` names (`all` = every stage); an unknown name is a ValueError."""
    unknown = set(force) - set(STAGES) - {"all"}
    if unknown:
        raise ValueError(f"--force {', '.join(sorted(unknown))}: allowed stages are {', '.join(STAGES)} or all")
    return set(STAGES) if "all" in force else set(force)


def run(recipe: Recipe, *, force: set[str] = frozenset(), db: str | Path | None = None,
        progress: bool = True, say: Callable[[str], None] = print) -> RunReport:
    force = parse_force(force)
    t0 = time.perf_counter()
    report = RunReport(db=str(Path(db) if db else Path(recipe.eval.db)))
    _build(recipe, "build" in force, progress, say, report)
    _train(recipe, "train" in force, progress, say, report)
    run_ids = _evaluate(recipe, "eval" in force, report.db, progress, say, report)
    if _judge_reachable(recipe, say):
        _judge(recipe, "judge" in force, run_ids, report.db, say, report)
    report.seconds = time.perf_counter() - t0
    paths = RunPaths.for_recipe(recipe)
    report.where = {
        "dataset": str(paths.dataset),
        **{f"model {m.name}": str(paths.train(m.name)) for m in recipe.train.methods},
        "results": report.db,
        "leaderboard": f"steper-bench leaderboard --db {report.db}",
    }
    say(f"all stages finished in {report.seconds:.1f}s")
    return report


def _build(recipe, force, progress, say, report) -> None:
    from steper_bench.build import build

    paths = RunPaths.for_recipe(recipe)
    if force:  # the request cache keeps teacher answers, so a forced rebuild pays nothing twice
        shutil.rmtree(paths.dataset, ignore_errors=True)
        shutil.rmtree(paths.root / "trajectories", ignore_errors=True)
    summary = build(recipe, progress=progress, log=lambda m: None)
    generated = sum(st.generated for st in summary.splits.values())
    kept = sum(summary.kept.values())
    status = "done" if generated else "skipped"
    detail = (f"{generated} questions generated, {kept} trajectories kept; {summary.requests} requests, "
              f"{summary.retries} retries, {summary.errors} failed"
              if generated else f"all questions already built for build hash {summary.build_hash}; {kept} kept")
    if len(summary.endpoints) > 1:  # replicas: where the calls went
        detail += "; " + ", ".join(f"{e['url']} {e['calls']} calls ({e['failed']} failed, out {e['taken_out']}x)"
                                   for e in summary.endpoints)
    report.add(StageReport("build", recipe.name, status, summary.seconds, detail, dict(summary.timings),
                           summary.endpoints), say)


def _train(recipe, force, progress, say, report) -> None:
    from steper_bench.training.pipeline import train

    for spec in recipe.train.methods:
        method = spec.name
        folder = RunPaths.for_recipe(recipe).train(method)
        if force:
            shutil.rmtree(folder, ignore_errors=True)
        r = train(recipe, method=method, progress=progress)
        status = "skipped" if r.skipped_existing else "done"
        if r.skipped_existing:
            detail = "already trained for train hash " + recipe.train_hash(spec)
        else:  # sigmas mean something only where they were learned
            learned = spec.weighting == "difficulty"
            sigmas = ", sigmas " + ", ".join(f"{k} {v:.3f}" for k, v in r.sigmas.items()) if learned else ""
            detail = f"{r.steps} steps{sigmas}"
        report.add(StageReport("train", method, status, r.seconds, detail, {"training": r.seconds}), say)


def _evaluate(recipe, force, db, progress, say, report) -> list[str]:
    from steper_bench.evaluation.evaluate import default_models, entry_label, eval_targets, evaluate

    # The judge runs as its own stage below, so that an unreachable judge never blocks eval.
    no_judge = recipe.model_copy(deep=True)
    no_judge.eval.judge.enabled = False
    run_ids = []
    for dataset in eval_targets(recipe):
        for entry in default_models(recipe):
            r = evaluate(no_judge, model=entry, dataset=dataset, db=db, force=force, progress=progress)
            status = "skipped" if r.skipped_existing else "done"
            acc = r.metrics.get("acc", {}).get("mean")
            detail = (f"run {r.run_id} already in {db}" if r.skipped_existing else f"run {r.run_id}, n={r.n}")
            if acc is not None:
                detail += f", acc {acc:.3f}"
            report.add(StageReport("eval", entry_label(entry, dataset), status, r.seconds, detail, dict(r.timings),
                                   r.endpoints), say)
            report.results.append((entry_label(entry, dataset), r))
            run_ids.append(r.run_id)
    return run_ids


def _judge_reachable(recipe: Recipe, say) -> bool:
    """The judge runs only when the recipe enables it and its endpoint answers; otherwise one line."""
    cfg = recipe.eval.judge
    if not cfg.enabled:
        say("[judge] skipped: eval.judge.enabled is false (set it and eval.judge.base_url to grade reasoning)")
        return False
    from steper_bench.generation.openai_compat import check_endpoint

    try:  # one replica answering is enough: the transport takes the others out and probes them
        check_endpoint(cfg.base_url, None, field="eval.judge.base_url", model=cfg.model)
    except Exception as e:  # noqa: BLE001 - any failure to connect means: skip, with the reason
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        say(f"[judge] skipped: the judge endpoint is not reachable ({reason})")
        return False
    return True


def _judge(recipe, force, run_ids, db, say, report) -> None:
    from steper_bench.evaluation import store
    from steper_bench.evaluation.judge import RUBRIC_VERSION, judge_runs

    todo = run_ids if force else [r for r in run_ids if not _judged(store, db, r, recipe.eval.judge.model, RUBRIC_VERSION)]
    if not todo:
        report.add(StageReport("judge", recipe.eval.judge.model, "skipped", 0.0,
                               "every run already judged with no failures"), say)
        return
    s = judge_runs(recipe, db=db, run_ids=todo)
    detail = f"{s.judged} judgments: {s.ok} ok, {s.failed} failed, {s.cached} cached"
    report.add(StageReport("judge", s.judge_model, "done", s.seconds, detail, {"judging": s.seconds}, s.endpoints), say)


def _judged(store, db, run_id: str, model: str, rubric: str) -> bool:
    """Judged already: some judgments and none failed. Failed ones (an outage, say) are
    retried; the cache answers the others for free."""
    con = store.connect(db, read_only=True)
    try:
        ok, failed = con.execute(
            "SELECT count(*) FILTER (WHERE status='ok'), count(*) FILTER (WHERE status<>'ok') FROM judgments "
            "WHERE run_id=? AND judge_model=? AND rubric_version=?",
            [run_id, model, rubric],
        ).fetchone()
    finally:
        con.close()
    return ok > 0 and failed == 0


def profile_table(report: RunReport):
    """Where the time went, per stage and phase (retrieval, generation, training, scoring,
    writing); then, for the stages that called endpoints (teacher, OpenAI-compatible students,
    judge), each endpoint's calls, successes, failures, times taken out and concurrency."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title="time per stage and phase (seconds)")
    for col in ("stage", "what", "total", "phases"):
        table.add_column(col)
    for s in report.stages:
        phases = ", ".join(f"{k} {v:.2f}" for k, v in s.phases.items() if v >= 0.005)
        table.add_row(s.stage, s.what, f"{s.seconds:.2f}", phases)
    table.add_row("all", "", f"{report.seconds:.2f}", "")
    called = [(s, e) for s in report.stages for e in s.endpoints]
    if not called:
        return table
    eps = Table(title="calls per endpoint")
    for col in ("stage", "what", "endpoint", "calls", "ok", "failed", "taken out", "concurrency"):
        eps.add_column(col, justify="right" if col in ("calls", "ok", "failed", "taken out", "concurrency") else "left")
    for s, e in called:
        eps.add_row(s.stage, s.what, e["url"], *(str(e.get(k, "")) for k in ("calls", "ok", "failed", "taken_out", "limit")))
    return Group(table, eps)

"""`evaluate(recipe, model=...)`: run a student through the multi-step loop over the eval split,
score it with lm-evaluation-harness (our steper_* tasks), and store everything in DuckDB.

Scores per sample are lm-eval's logged ones (computed by steper_bench.metrics through the
task's process_results hook); the step trace comes from the loop's trajectories, which lm-eval
does not keep. A run with the same run_id already finished in the file is skipped (and said
so); `force=True` replaces it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from steper_bench.console import logged
from steper_bench.evaluation import store, trace
from steper_bench.evaluation.models import describe, parse_model_spec
from steper_bench.provenance import git_commit, package_versions
from steper_bench.recipe import EvalModel, GeneratorConfig, Recipe, SourceConfig, digest

log = logging.getLogger(__name__)

# eval fields that do not change a model's numbers: which models to run, the judge, the file.


@dataclass
class EvalResult:
    run_id: str
    model: str
    method: str
    metrics: dict[str, dict]  # metric -> {mean, ci_low, ci_high, n}
    n: int
    seconds: float
    skipped_existing: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    db: str = ""
    judge: object = None  # JudgeSummary when recipe.eval.judge.enabled
    # lm-eval's own output for this run: {"results": aggregated metrics of the task,
    # "samples": {question id: {"prediction", "em", "f1", "acc"}}} (None when skipped)
    lm_eval: dict | None = None
    endpoints: list[dict] = field(default_factory=list)  # per student endpoint: url, calls, ok, failed, ...


def eval_hash(recipe: Recipe) -> str:
    """What a student's numbers depend on: the recipe's eval-stage hash (source, corpus,
    framework and eval settings, without the model list, teacher flag and judge)."""
    return recipe.stage_hash("eval")


def make_run_id(recipe: Recipe, identity: str, limit: int | None, few_shot: int = 0) -> str:
    return digest([eval_hash(recipe), identity, recipe.eval.split, limit, few_shot])


def default_db(recipe: Recipe) -> Path:
    return Path(recipe.eval.db)  # relative to the current directory, like any output path given


def default_models(recipe: Recipe) -> list[EvalModel]:
    """eval.models, plus the teacher (evaluated few-shot, as it built the data) if include_teacher."""
    models = list(recipe.eval.models)
    if recipe.eval.include_teacher and not any(m.model == "teacher" for m in models):
        models.append(EvalModel(model="teacher"))
    return models


def eval_targets(recipe: Recipe) -> list[SourceConfig | None]:
    """The test sets every model is evaluated on: the recipe's own (None), then eval.datasets
    other than the recipe's own dataset (so a grid over datasets can list all of them)."""
    return [None, *[d for d in recipe.eval.datasets if d.dataset != recipe.source.dataset]]


def entry_label(entry: EvalModel, dataset: SourceConfig | None = None) -> str:
    """How a console line names an evaluated system: the model, its ICL / framework settings, an
    out-of-domain test set."""
    extras = [f"{entry.few_shot}-shot" if entry.few_shot is not None else "", entry.framework or "",
              f"on {dataset.dataset}" if dataset is not None else ""]
    return " ".join([entry.model, *[x for x in extras if x]])


def target_recipe(recipe: Recipe, entry: EvalModel, dataset: SourceConfig | None = None) -> Recipe:
    """The recipe an evaluation runs under: another test set (out-of-domain: its own source and
    pooled corpus) and/or another framework (baseline rows); the training recipe otherwise."""
    if dataset is None and entry.framework in (None, recipe.framework.name):
        return recipe
    target = recipe.model_copy(deep=True)
    if dataset is not None:  # its own questions' pooled corpus: the recipe's corpus files are another dataset's
        target.source = dataset.model_copy()
        target.corpus = target.corpus.model_copy(update={"source": "pooled", "pool_splits": None, "pool_files": [],
                                                         "files": None, "index_path": None})
    if entry.framework not in (None, recipe.framework.name):
        target.framework = target.framework.model_copy(update={"name": entry.framework, "query": "last-sentence"})
    return target


def shots(recipe: Recipe, entry: EvalModel) -> int:
    """Demonstrations for a model entry: its own few_shot; else the teacher's build setting
    (framework.few_shot) for the teacher, eval.few_shot for everyone else."""
    if entry.few_shot is not None:
        return entry.few_shot
    return recipe.framework.few_shot if entry.model == "teacher" else recipe.eval.few_shot


@logged("eval")
def evaluate(recipe: Recipe, *, model: str | EvalModel, dataset: SourceConfig | None = None,
             db: str | Path | None = None, limit: int | None = None, force: bool = False, progress: bool = True,
             cache=None) -> EvalResult:
    """Evaluate one model entry on the recipe's test set, or on `dataset` (out-of-domain)."""
    t0 = time.perf_counter()
    entry = model if isinstance(model, EvalModel) else EvalModel(model=model)
    db = Path(db) if db is not None else default_db(recipe)
    limit = limit or recipe.eval.limit
    cfg, method = parse_model_spec(entry.model, recipe)  # trained:METHOD: this recipe's students
    if cfg.backend == "openai":  # fail in seconds, before loading anything, on a dead endpoint
        from steper_bench.generation.openai_compat import check_endpoint

        check_endpoint(cfg.base_url, cfg.api_key, model=cfg.model,
                       field="teacher.base_url" if entry.model == "teacher" else f"--model {entry.model}")
    if cfg.backend == "vllm":  # likewise without the engine: one line saying what to install
        from steper_bench.generation import GeneratorError
        from steper_bench.generation.vllm_offline import available

        if why := available():
            raise GeneratorError(f"--model {entry.model}: {why}")
    info = describe(cfg)
    few_shot = shots(recipe, entry)
    recipe = target_recipe(recipe, entry, dataset)
    run_id = make_run_id(recipe, info.identity, limit, few_shot)
    con = store.connect(db)  # also before a --force run: a damaged file fails here, before any work
    try:
        done = None if force else store.finished_run(con, run_id)
    finally:
        con.close()
    if done is not None:
        return EvalResult(run_id, info.model, method, done["metrics"], done["n"],
                          time.perf_counter() - t0, skipped_existing=True, db=str(db))
    started = store.utcnow()
    if cache is None:
        from steper_bench.cache import RequestCache
        from steper_bench.runs import RunPaths

        cache = RequestCache(RunPaths.for_recipe(recipe).cache)
    from steper_bench.evaluation.runner import StudentRunner

    runner = StudentRunner.from_recipe(recipe, cfg, limit=limit, cache=cache, progress=progress, few_shot=few_shot)
    try:
        lm_samples, lm_results, trajectories, lm_seconds = run_lm_eval(recipe, runner)
    finally:
        runner.close()
    endpoints = runner.endpoints()
    t = time.perf_counter()
    run = _run_row(recipe, run_id, cfg, info, method, runner, started)
    samples, steps, paragraphs = _rows(run_id, runner, lm_samples, trajectories)
    run["n"] = len(samples)
    failed = bool(samples) and all(s["stop_reason"] == "failed" for s in samples)
    if failed:  # stored (its errors are worth reading) but never shown as a result
        run["status"] = "failed"
    con = store.connect(db)
    try:
        metrics = store.write_run(con, run, samples, steps, paragraphs, _sigma_rows(run_id, cfg, method))
    finally:
        con.close()
    timings = _timings(runner, lm_seconds, writing_s=time.perf_counter() - t)
    if failed:
        from steper_bench.generation import GeneratorError

        first = next((s["error"] for s in steps if s.get("error")), "no error recorded")
        raise GeneratorError(
            f"all {len(samples)} questions failed for {info.model} ({first}): stored as failed run {run_id} "
            "(hidden from the leaderboard and report); fix the model or endpoint and re-run"
        )
    judged = None
    if recipe.eval.judge.enabled:
        from steper_bench.evaluation.judge import judge_runs

        t = time.perf_counter()
        judged = judge_runs(recipe, db=db, run_ids=[run_id], cache=cache)
        metrics = {**metrics, **{k: v for k, v in _reread(db, run_id).items() if k.startswith("judge_")}}
        timings["judging"] = time.perf_counter() - t
    lm_view = {"results": lm_results, "samples": {
        qid: {"prediction": _lm_prediction(s, ""), **{m: float(s[m]) for m in ("em", "f1", "acc")}}
        for qid, s in lm_samples.items()}}
    return EvalResult(run_id, info.model, method, metrics, len(samples), time.perf_counter() - t0,
                      timings=timings, db=str(db), judge=judged, lm_eval=lm_view, endpoints=endpoints)


def _reread(db: Path, run_id: str) -> dict[str, dict]:
    con = store.connect(db, read_only=True)
    try:
        return store.read_metrics(con, run_id)
    finally:
        con.close()


def run_lm_eval(recipe: Recipe, runner) -> tuple[dict[str, dict], dict, dict, float]:
    """simple_evaluate over the runner's questions; (logged samples by question id, the task's
    aggregated results, trajectories by question id, seconds)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from steper_bench.lm_eval import MultiStepLM, task_folder, task_name
    from steper_bench.lm_eval.hooks import register_docs, release_docs

    task = task_name(recipe.source.dataset)
    key = register_docs(runner.questions)
    lm = MultiStepLM(runner=runner)
    t = time.perf_counter()
    try:
        tm = TaskManager(include_path=str(task_folder()), include_defaults=False, metadata={"docs_key": key})
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[task], task_manager=tm, log_samples=True, bootstrap_iters=0,
            num_fewshot=0, random_seed=recipe.source.seed,
        )
    finally:
        release_docs(key)
    logged = {s["doc"]["id"]: s for s in out["samples"][task]}
    if len(logged) != len(runner.questions):
        raise RuntimeError(f"lm-eval logged {len(logged)} samples for {len(runner.questions)} questions")
    return logged, dict(out["results"][task]), lm.trajectories, time.perf_counter() - t


def _rows(run_id: str, runner, lm_samples: dict, trajectories: dict):
    samples, steps, paragraphs = [], [], []
    for q in runner.questions:
        traj = trajectories[q.id]
        logged = lm_samples[q.id]
        row = trace.sample_row(run_id, q, traj)
        # The scores stored are lm-eval's (our metrics through the task hook).
        row.update({m: float(logged[m]) for m in ("em", "f1", "acc")})
        row["prediction"] = _lm_prediction(logged, traj.prediction)
        samples.append(row)
        steps += trace.step_rows(run_id, q, traj)
        paragraphs += trace.paragraph_rows(run_id, q, traj)
    return samples, steps, paragraphs


def _lm_prediction(logged: dict, fallback: str) -> str:
    resp = logged.get("filtered_resps") or logged.get("resps") or [fallback]
    while isinstance(resp, list):
        resp = resp[0] if resp else fallback
    return str(resp)


def _run_row(recipe: Recipe, run_id: str, cfg: GeneratorConfig, info, method: str, runner, started) -> dict:
    return {
        "run_id": run_id, "recipe_name": recipe.name, "recipe_hash": recipe.hash, "eval_hash": eval_hash(recipe),
        "model": info.model, "model_revision": info.revision, "model_family": info.family,
        "model_size_b": info.size_b, "backend": info.backend, "method": method,
        "teacher": recipe.teacher.model, "dataset": recipe.source.dataset,
        "dataset_revision": runner.dataset_revision, "split": recipe.eval.split,
        "versions": package_versions(), "git_commit": git_commit(),
        "seeds": {"source": recipe.source.seed, "generator": cfg.seed, "bootstrap": store.BOOTSTRAP_SEED},
        "started_at": started, "finished_at": store.utcnow(), "status": "finished",
        "framework": recipe.framework.name, "few_shot": len(runner.settings.demos), **info.training,
    }


def _timings(runner, lm_seconds: float, writing_s: float) -> dict[str, float]:
    """Where the eval's time went, without double counting: the loop runs inside lm-eval, so
    scoring is lm-eval's time minus the loop's (retrieval and generation are inside the loop)."""
    phases = {k: runner.clock.t.get(k, 0.0) for k in ("load", "index", "model_load", "retrieval", "generation")}
    return {**phases, "scoring": max(lm_seconds - runner.loop_s, 0.0), "writing": writing_s}


def _sigma_rows(run_id: str, cfg: GeneratorConfig, method: str) -> list[dict]:
    """A student's learned sigma per step kind over training (weights.json history). Only the
    difficulty weighting learns one: uniform and fixed keep s at 0 (sigma 1), so their flat
    histories are not stored. ("learned" is how older students' weights.json named it.)"""
    f = Path(cfg.model) / "weights.json"
    if cfg.backend not in ("transformers", "vllm") or not f.exists():
        return []
    try:
        weights = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if weights.get("weighting") not in ("difficulty", "learned"):
        return []
    rows = {}
    for point in weights.get("history") or []:
        for kind, sigma in point.items():
            if kind != "step" and isinstance(sigma, (int, float)):
                rows[(int(point.get("step", 0)), kind)] = float(sigma)
    return [{"run_id": run_id, "step": s, "kind": k, "sigma": v} for (s, k), v in sorted(rows.items())]



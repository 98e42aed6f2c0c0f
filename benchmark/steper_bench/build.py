"""The build stage: teacher trajectories -> filtered step-wise dataset (+ card), resumable.

    summary = build(recipe)                       # BuildSummary
    build(recipe, shard=(0, 2)); build(recipe, shard=(1, 2)); build(recipe, merge=True)

1. Preflight (before any heavy work): environment variables the teacher needs, the Hub for a
   Hub source, the teacher endpoint. Each failure is one `BuildError` saying what to set.
2. Load train and test questions (both: the pooled corpus is every loaded question's
   paragraphs); build `dataset.splits` ([train] or [train, test]).
3. Run the multi-step loop with the teacher over questions that have no finished trajectory yet,
   appending each finished batch to `trajectories/<split>.jsonl` (flushed and fsynced), so a
   killed build resumes where it stopped and repeats no generator call. A trajectory that failed
   (endpoint errors after retries) is retried on the next run; cached steps cost nothing.
4. Filter (`dataset.filter`), expand step-wise (`stepwise.py`), write Parquet in the Hub's layout
   with a card, the resolved recipe and a build log. `push=True` then publishes.

Shards (`--shard i/N`) split questions by a stable hash of their id and write
`trajectories/<split>.shard-i-of-N.jsonl` (no dataset); `merge=True` joins the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steper_bench.console import logged
from steper_bench.recipe import Recipe, RecipeError, endpoint_urls, expand_env
from steper_bench.records import Question, Trajectory
from steper_bench.runs import RunPaths, atomic_write_text
from steper_bench.timing import PhaseClock, Timed

SPLITS = ("train", "test")
DROP_REASONS = ("failed steps", "max steps", "no answer", "wrong answer")


class BuildError(RuntimeError):
    """A build problem a user can act on; the message says what to set or run."""


# -- summary ------------------------------------------------------------------------------------


@dataclass
class SplitStats:
    questions: int = 0  # in scope (after --limit / --shard)
    resumed: int = 0  # finished trajectories found on disk
    generated: int = 0  # trajectories produced by this run
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_records: int = 0  # malformed source records

    @property
    def kept_fraction(self) -> float:
        total = self.kept + sum(self.dropped.values())
        return self.kept / total if total else 0.0


@dataclass
class BuildSummary:
    recipe: str
    build_hash: str
    run_dir: str
    splits: dict[str, SplitStats] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows
    paths: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    seconds: float = 0.0
    requests: int = 0  # generator requests that were not answered from the cache
    cache_hits: int = 0
    errors: int = 0  # requests that still failed after their retries
    retries: int = 0  # transport retries (429, 5xx, timeouts) the generator made
    endpoints: list[dict] = field(default_factory=list)  # per teacher endpoint: url, calls, ok, failed, taken_out
    estimated_requests: int = 0  # dry run: upper bound for the remaining questions
    dry_run: bool = False
    shard: tuple[int, int] | None = None
    url: str | None = None  # set when pushed

    @property
    def kept(self) -> dict[str, int]:
        return {s: st.kept for s, st in self.splits.items()}

    @property
    def drop_reasons(self) -> dict[str, dict[str, int]]:
        return {s: dict(st.dropped) for s, st in self.splits.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for s, st in self.splits.items():
            d["splits"][s]["kept_fraction"] = round(st.kept_fraction, 4)
        return d

    def format(self) -> str:
        lines = [f"recipe {self.recipe}  build {self.build_hash}  run {self.run_dir}"]
        for s, st in self.splits.items():
            drops = ", ".join(f"{k} {v}" for k, v in st.dropped.items() if v) or "none"
            lines.append(f"  {s}: {st.questions} questions ({st.resumed} resumed, {st.generated} generated), "
                         f"kept {st.kept} ({st.kept_fraction:.0%}); dropped: {drops}")
        for config, per in self.counts.items():
            lines.append(f"  {config}: " + ", ".join(f"{s} {n}" for s, n in per.items()))
        if self.dry_run:
            lines.append(f"  dry run: at most {self.estimated_requests} generator requests for the remaining "
                         "questions (questions x (max_steps + 1 forced answer step)); nothing was called")
        else:
            t = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
            lines.append(f"  requests {self.requests}, cache hits {self.cache_hits}, retries {self.retries}, "
                         f"failed {self.errors}; "
                         f"{self.seconds:.1f}s ({t})")
            lines += [f"  endpoint {e['url']}: {e['calls']} calls, {e['ok']} ok, {e['failed']} failed, "
                      f"taken out {e['taken_out']}x, concurrency {e['limit']}" for e in self.endpoints]
        lines += [f"  {k}: {v}" for k, v in self.paths.items()]
        return "\n".join(lines)


# -- preflight ------------------------------------------------------------------------------------


def preflight(recipe: Recipe, *, network: bool = True) -> list[str]:
    """Fail fast, before loading or indexing anything, on what a user must set. Returns notes."""
    notes: list[str] = []
    t = recipe.teacher
    if t.backend == "openai":
        try:
            for url in endpoint_urls(t.base_url):
                expand_env(url, what="teacher.base_url")
            expand_env(t.api_key, what="teacher.api_key")
        except RecipeError as e:
            raise BuildError(f"{e} or use recipes/quickstart.yaml for an offline run") from None
        if not t.base_url and not (t.api_key or os.environ.get("OPENAI_API_KEY")):
            raise BuildError("teacher.base_url is not set and there is no OPENAI_API_KEY: set teacher.base_url "
                             "to an OpenAI-compatible endpoint (e.g. vLLM) or export OPENAI_API_KEY")
    if t.backend == "vllm":
        from steper_bench.generation.vllm_offline import available

        if available():
            raise BuildError(f"teacher.{available()}; or use recipes/quickstart.yaml for an offline run")
    _check_corpus(recipe)
    if network:
        _check_hub(recipe, notes)
        if t.backend == "openai" and t.base_url:
            notes += _check_endpoint(recipe)
    return notes


def _check_corpus(recipe: Recipe) -> None:
    """A corpus file that is not there: say what to download and where, before any work."""
    if recipe.corpus.source == "index" and recipe.corpus.backend == "bm25":
        from steper_bench.retrieval.paragraph_files import CorpusError
        from steper_bench.retrieval.saved_index import check_folder, folder_of

        try:
            check_folder(folder_of(recipe))
        except CorpusError as e:
            raise BuildError(str(e)) from None
    if recipe.corpus.source != "file":
        return
    from steper_bench.retrieval import file_spec
    from steper_bench.retrieval.paragraph_files import CorpusError, expand

    try:
        expand(file_spec(recipe))
    except CorpusError as e:
        raise BuildError(str(e)) from None


def _hub_splits(recipe: Recipe) -> list[str]:
    src = recipe.source
    return [s for s in SPLITS if not (src.train_file if s == "train" else src.test_file)] if src.hub_id else []


def _check_hub(recipe: Recipe, notes: list[str]) -> None:
    if not _hub_splits(recipe):
        return
    from steper_bench.sources import check_hub, hub_offline

    if hub_offline():
        notes.append(f"HF_HUB_OFFLINE is set: source.hub_id={recipe.source.hub_id} must be in the local cache")
    check_hub(recipe.source.hub_id)


def _check_endpoint(recipe: Recipe) -> list[str]:
    from steper_bench.generation import GeneratorError
    from steper_bench.generation.openai_compat import check_endpoint

    t = recipe.teacher
    try:
        return check_endpoint(t.base_url, t.api_key, field="teacher.base_url", model=t.model)
    except GeneratorError as e:
        raise BuildError(f"{e}; or use recipes/quickstart.yaml for an offline run") from None


# -- trajectories on disk -------------------------------------------------------------------------


def shard_of(question_id: str, n: int) -> int:
    """Stable shard of a question: the same on every machine and Python run."""
    return int(hashlib.sha1(question_id.encode("utf-8")).hexdigest()[:12], 16) % n


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not (0 <= int(m.group(1)) < int(m.group(2))):
        raise BuildError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. --shard 0/4")
    return int(m.group(1)), int(m.group(2))


def trajectories_path(paths: RunPaths, split: str, shard: tuple[int, int] | None) -> Path:
    path = paths.trajectories(split)
    return path if shard is None else path.with_name(f"{split}.shard-{shard[0]}-of-{shard[1]}.jsonl")


def read_trajectories(path: Path) -> dict[str, Trajectory]:
    """question id -> its last trajectory in a JSONL file. A torn last line (a killed writer) is
    ignored; a damaged line elsewhere is an error naming the line."""
    out: dict[str, Trajectory] = {}
    if not path.exists():
        return out
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            t = Trajectory.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines):  # unterminated last line: the writer was killed mid-write
                break
            raise BuildError(f"{path}:{i}: damaged trajectory record ({e}); delete the line to redo it") from None
        out[t.question_id] = t
    return out


class TrajectoryWriter:
    """Append-only JSONL; each batch is flushed and fsynced before the loop moves on."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._repair()
        self.f = open(path, "ab")
        self.written = 0

    def _repair(self) -> None:
        """Drop a torn last line (no trailing newline) so appends start on a fresh line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def __call__(self, batch: Sequence[Trajectory]) -> None:
        self.f.write(b"".join(json.dumps(t.to_dict(), ensure_ascii=False).encode() + b"\n" for t in batch))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.written += len(batch)

    def close(self) -> None:
        self.f.close()


def merge_shards(paths: RunPaths, split: str) -> int:
    """Join `<split>.shard-i-of-N.jsonl` (all N present) into `<split>.jsonl`; returns records."""
    folder = paths.trajectories(split).parent
    found = {}
    for p in folder.glob(f"{split}.shard-*-of-*.jsonl"):
        m = re.fullmatch(rf"{re.escape(split)}\.shard-(\d+)-of-(\d+)\.jsonl", p.name)
        if m:
            found[(int(m.group(1)), int(m.group(2)))] = p
    if not found:
        return 0
    totals = {n for _, n in found}
    if len(totals) != 1:
        raise BuildError(f"{folder}: shard files of different counts {sorted(totals)}: keep one --shard i/N layout")
    n = totals.pop()
    missing = [i for i in range(n) if (i, n) not in found]
    if missing:
        raise BuildError(f"cannot merge {split}: shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing: "
                         f"run build --shard {missing[0]}/{n} first")
    merged = read_trajectories(paths.trajectories(split))
    for key in sorted(found):
        for qid, t in read_trajectories(found[key]).items():
            if qid not in merged or merged[qid].stop_reason == "failed":
                merged[qid] = t
    text = "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in merged.values())
    atomic_write_text(paths.trajectories(split), text)
    return len(merged)


# -- filtering ------------------------------------------------------------------------------------


def drop_reason(t: Trajectory, spec: str) -> str | None:
    """Why a trajectory is not kept, or None when it is. Failed trajectories never are, even
    with filter `all`: their chains are cut short by an error."""
    from steper_bench.metrics import normalize_answer, passes_filter

    if t.stop_reason == "failed" or any(s.error for s in t.steps) or not t.steps:
        return "failed steps"
    if passes_filter({"em": t.em, "f1": t.f1, "acc": t.acc}, spec):
        return None
    if not t.prediction or normalize_answer(t.prediction) == "noanswer":  # abstaining is not a wrong answer
        return "max steps" if t.stop_reason == "max_steps" else "no answer"
    return "wrong answer"


# -- the stage ------------------------------------------------------------------------------------


@contextmanager
def run_lock(path: Path, say) -> Iterator[None]:
    """One build at a time per run folder (and shard): an fcntl lock on `path`, released by the OS
    if its holder dies; a second build says so and waits, then resumes and finds the work done."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            say(f"another build of this recipe is running ({holder}) in {path.parent}: waiting for it to finish "
                "(Ctrl-C to stop; finished work is kept)")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _reasons(skipped) -> str:
    """Skip reasons with counts, most common first ("invalid JSON 3, missing field 'answer' 1")."""
    counts = Counter(s.reason.split(" (")[0] for s in skipped)
    return ", ".join(f"{r} {n}" for r, n in counts.most_common())


def _report_skipped(recipe: Recipe, loaded: dict, say) -> None:
    """Malformed records, counted with reasons, on the console and in build.log; a split the
    build needs with no usable record at all is an error (not a 0-row dataset)."""
    for split, result in loaded.items():
        if result.skipped:
            first = result.skipped[0]
            say(f"{split}: skipped {len(result.skipped)} malformed record(s) in {result.path_or_id}: "
                f"{_reasons(result.skipped)} (first: line {first.line}{', id ' + first.id if first.id else ''}: "
                f"{first.reason})")
        if split in recipe.dataset.splits and not result.questions:
            raise BuildError(
                f"0 usable records in {result.path_or_id} ({len(result.skipped)} skipped"
                + (f": {_reasons(result.skipped)}" if result.skipped else ": the file is empty")
                + f"); check source.{split}_file and source.dataset ({recipe.source.dataset}'s format)"
            )


def _select(questions: list[Question], limit: int | None, shard: tuple[int, int] | None, exclude: set[str]):
    qs = [q for q in questions if q.id not in exclude]
    qs = qs[:limit] if limit is not None else qs  # a prefix: a larger limit later reuses the work
    return [q for q in qs if shard_of(q.id, shard[1]) == shard[0]] if shard else qs


def _load(recipe: Recipe, strict: bool | None, summary: BuildSummary, clock: PhaseClock):
    from steper_bench.sources import SourceError, load_questions

    loaded = {}
    with clock("load"):
        for split in SPLITS:
            try:
                loaded[split] = load_questions(recipe, split, strict=strict)
            except SourceError as e:
                if split == "test" and "test" not in recipe.dataset.splits and not recipe.source.has_split("test"):
                    continue  # no test source at all: the corpus is the train split alone
                raise BuildError(str(e)) from None
    return loaded


@logged("build")
def build(
    recipe: Recipe,
    *,
    limit: int | None = None,
    shard: tuple[int, int] | str | None = None,
    merge: bool = False,
    dry_run: bool = False,
    output: str | os.PathLike | None = None,
    push: bool = False,
    strict: bool | None = None,
    progress: bool = True,
    log=print,
) -> BuildSummary:
    t0 = time.perf_counter()
    if isinstance(shard, str):
        shard = parse_shard(shard)
    if shard and merge:
        raise BuildError("--shard and --merge do not go together: build the shards, then run --merge alone")
    if shard and push:
        raise BuildError("--push needs the whole dataset: run --merge (with --push) after all shards")
    paths = RunPaths.for_recipe(recipe)
    build_hash = recipe.stage_hash("build")
    summary = BuildSummary(recipe.name, build_hash, str(paths.root), dry_run=dry_run, shard=shard)
    clock = PhaseClock()
    lines: list[str] = []

    def say(msg: str) -> None:  # the console and build.log (appended as it goes: a failed build's too)
        lines.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}")
        log(msg)
        _append_log(paths.log, lines[-1:])

    if dry_run:
        return _dry_run(recipe, paths, summary, limit, shard, say)
    lock = ".build.lock" if shard is None else f".build-shard-{shard[0]}-of-{shard[1]}.lock"
    with run_lock(paths.root / lock, say):  # a second build of this recipe waits, then finds the work done
        for note in preflight(recipe):
            say(note)
        loaded = _load(recipe, strict, summary, clock)
        _report_skipped(recipe, loaded, say)
        from steper_bench.reasoning.prompts import demo_question_ids

        exclude = demo_question_ids(recipe.source.dataset) if recipe.framework.few_shot else set()
        scope = {s: _select(loaded[s].questions, limit, shard, exclude) for s in recipe.dataset.splits}
        if merge:
            for split in recipe.dataset.splits:
                say(f"merged {merge_shards(paths, split)} {split} trajectories from shards")
        done = _generate(recipe, paths, loaded, scope, shard, summary, clock, progress, say)
        _fail_if_all_failed(summary, done, scope)
        for split in recipe.dataset.splits:
            summary.splits[split].skipped_records = len(loaded[split].skipped)
        if shard is None:
            _write_outputs(recipe, paths, loaded, scope, done, summary, clock, output, say)
        summary.timings = dict(clock.t)
        summary.seconds = time.perf_counter() - t0
        say(summary.format())
        if shard is None:
            out_dir = Path(output) if output else paths.dataset
            atomic_write_text(out_dir / "build.log", "\n".join(lines) + "\n")
    if push:
        from steper_bench.publish import publish

        with clock("push"):
            summary.url = publish(recipe, data_dir=summary.paths["dataset"], log=log)
        summary.timings = dict(clock.t)
    return summary


def _generate(recipe, paths, loaded, scope, shard, summary, clock, progress, say) -> dict[str, dict[str, Trajectory]]:
    """Run the teacher over unfinished questions of each split; returns qid -> trajectory."""
    done: dict[str, dict[str, Trajectory]] = {}
    todo: dict[str, list[Question]] = {}
    for split, qs in scope.items():
        path = trajectories_path(paths, split, shard)
        on_disk = read_trajectories(path)
        done[split] = on_disk
        todo[split] = [q for q in qs if q.id not in on_disk or on_disk[q.id].stop_reason == "failed"]
        summary.splits[split] = SplitStats(questions=len(qs), resumed=len(qs) - len(todo[split]))
        say(f"{split}: {len(qs)} questions, {summary.splits[split].resumed} already built, {len(todo[split])} to run")
    if not any(todo.values()):
        return done
    from steper_bench.cache import RequestCache
    from steper_bench.generation import make_generator
    from steper_bench.reasoning.loop import LoopSettings, run_loop
    from steper_bench.retrieval import make_retriever

    cache = RequestCache(paths.cache)
    with clock("index"):
        pool = [q for s in SPLITS if s in loaded for q in loaded[s].questions]
        retriever = make_retriever(recipe, pool, index_dir=paths.indexes, cache=cache, progress=progress)
    generator = make_generator(recipe.teacher, cache, max_new_tokens=recipe.framework.max_new_tokens)
    settings = LoopSettings.from_recipe(recipe, role="teacher")
    try:
        for split, qs in todo.items():
            if not qs:
                continue
            writer = TrajectoryWriter(trajectories_path(paths, split, shard))
            try:
                trajs = run_loop(
                    qs, Timed(retriever, clock, "retrieval", summary), Timed(generator, clock, "generation", summary),
                    settings, on_finished=_timed(writer, clock), progress=progress, recipe_hash=recipe.stage_hash("build"),
                )
            finally:
                writer.close()
            done[split].update({t.question_id: t for t in trajs})
            summary.splits[split].generated = len(trajs)
    finally:
        summary.retries = getattr(generator, "stats", {}).get("retries", 0)
        summary.endpoints = generator.endpoints() if hasattr(generator, "endpoints") else []
        generator.close()
    return done


def _fail_if_all_failed(summary: BuildSummary, done, scope) -> None:
    """A build whose every new trajectory failed on teacher errors is an error, not an empty
    dataset: the message names the first error (with its endpoint). The failures are on disk and
    in the cache's failure table; the next run retries them."""
    generated = sum(st.generated for st in summary.splits.values())
    new = [done[s][q.id] for s, qs in scope.items() for q in qs if q.id in done[s]]
    failed = [t for t in new if t.stop_reason == "failed"]
    if not generated or not summary.errors or len(failed) < len(new):
        return
    first = next((st.error for t in failed for st in t.steps if st.error), "no error recorded")
    msg = (f"all {len(failed)} questions failed: every teacher request failed after its retries (first error: "
           f"{first}); check teacher.base_url, teacher.model and the server's log, then re-run (the failed "
           "questions are retried, finished work is kept)")
    raise BuildError(msg)


def _timed(writer: TrajectoryWriter, clock: PhaseClock):
    def on_finished(batch):
        with clock("writing"):
            writer(batch)

    return on_finished


def _write_outputs(recipe, paths, loaded, scope, done, summary, clock, output, say) -> None:
    from steper_bench.stepwise import build_dataset_dict

    spec = recipe.dataset.filter
    by_split: dict[str, list[Trajectory]] = {}
    for split, qs in scope.items():
        trajs = [done[split][q.id] for q in qs if q.id in done[split]]  # question order: reproducible
        by_split[split] = trajs
        reasons = Counter(drop_reason(t, spec) for t in trajs)
        st = summary.splits[split]
        st.kept = reasons.pop(None, 0)
        st.dropped = {r: reasons.get(r, 0) for r in DROP_REASONS}
    from steper_bench.reasoning.loop import LoopSettings

    out_dir = Path(output) if output else paths.dataset
    with clock("writing"):
        dd = build_dataset_dict(
            by_split, keep=lambda t: drop_reason(t, spec) is None,
            settings=LoopSettings.from_recipe(recipe, role="student", few_shot=0),
            final_target=recipe.dataset.final_target,
        )
        summary.counts = write_dataset(dd, out_dir)
    recipe_yaml = recipe.to_yaml()
    atomic_write_text(paths.root / "recipe.yaml", recipe_yaml)
    atomic_write_text(out_dir / "recipe.yaml", recipe_yaml)
    with clock("card"):
        from steper_bench.publish import dataset_card

        card = dataset_card(recipe, summary, loaded)
        atomic_write_text(out_dir / "README.md", card)
    summary.paths = {"dataset": str(out_dir), "card": str(out_dir / "README.md"),
                     "trajectories": str(paths.trajectories("train").parent), "log": str(paths.log)}
    atomic_write_text(out_dir / "build_summary.json", json.dumps(summary.to_dict(), indent=1))
    say(f"wrote {', '.join(f'{c} ({sum(v.values())})' for c, v in summary.counts.items())} to {out_dir}")


def write_dataset(dd_by_config: dict, out_dir: Path) -> dict[str, dict[str, int]]:
    """Parquet in the Hub's layout, `<config>/<split>-00000-of-00001.parquet`, each file written
    to a temporary name and renamed; stale Parquet files of our configs are removed."""
    counts: dict[str, dict[str, int]] = {}
    for config, dd in dd_by_config.items():
        folder = out_dir / config
        folder.mkdir(parents=True, exist_ok=True)
        written = set()
        for split, ds in dd.items():
            path = folder / f"{split}-00000-of-00001.parquet"
            tmp = folder / f".{path.name}.{os.getpid()}.tmp"
            _write_parquet(ds, tmp)
            os.replace(tmp, path)
            written.add(path.name)
        for stale in folder.glob("*.parquet"):
            if stale.name not in written:
                stale.unlink()
        counts[config] = {split: ds.num_rows for split, ds in dd.items()}
    return counts


def _write_parquet(ds, path: Path) -> None:
    """The dataset's Arrow table with its features in the schema metadata (as datasets writes
    it), fsynced before the caller renames it into place."""
    import pyarrow.parquet as pq

    table = ds.with_format("arrow")[:]
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **ds.features.arrow_schema.metadata})
    pq.write_table(table, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _append_log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _dry_run(recipe: Recipe, paths: RunPaths, summary: BuildSummary, limit, shard, say) -> BuildSummary:
    """The plan and an upper bound on requests; reads local files only, calls nothing."""
    from steper_bench.sources import load_questions

    src = recipe.source
    bound = recipe.framework.max_steps + 1
    say(f"plan: teacher {recipe.teacher.backend}:{recipe.teacher.model}, {recipe.corpus.backend} top_k "
        f"{recipe.corpus.top_k} ({recipe.corpus.mode}), max_steps {recipe.framework.max_steps}, "
        f"filter {recipe.dataset.filter}, splits {', '.join(recipe.dataset.splits)}")
    for split in recipe.dataset.splits:
        local = (src.train_file if split == "train" else src.test_file) or src.world
        if local:
            qs = _select(load_questions(recipe, split).questions, limit, shard, set())
            n, ids = len(qs), {q.id for q in qs}
        else:  # a Hub source is not loaded in a dry run: the limits bound it, if any
            bounds = [x for x in (limit, src.train_limit if split == "train" else src.test_limit) if x]
            n, ids = (min(bounds) if bounds else None), None
            say(f"{split}: Hub source {src.hub_id} is not loaded in a dry run; "
                + (f"its limit bounds it: {n} questions" if n else "no limit: size unknown, not in the estimate"))
            if n is None:
                continue
        on_disk = read_trajectories(trajectories_path(paths, split, shard))
        finished = {q for q, t in on_disk.items() if t.stop_reason != "failed" and (ids is None or q in ids)}
        remaining = max(n - len(finished), 0)
        summary.splits[split] = SplitStats(questions=n, resumed=len(finished))
        summary.estimated_requests += remaining * bound
        say(f"{split}: {n} questions, {len(finished)} already built, {remaining} to run, "
            f"<= {remaining * bound} requests")
    say(summary.format())
    return summary

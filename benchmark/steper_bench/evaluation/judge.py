"""LLM-as-judge over any OpenAI-compatible endpoint (default gpt-4o): per-step scores for the
three abilities the paper names, and pairwise comparisons of two runs.

- The abilities and which steps each grades come from one table (evaluation/abilities.py) and
  the run's framework (its step roles): under IRCoT, initialization grades step 1 against P1,
  expansion each middle step against the paragraphs seen so far and the earlier steps,
  aggregation the final step and answer against all of it.
- Reference: gold answer(s) and the gold supporting facts. Rubric text: rubric_v1.md (OUR
  choice, the paper does not publish one), versioned by RUBRIC_VERSION, stored with each score.
- Temperature 0, JSON output ({"score": 1-5, "rationale": ...}), response_format json_object
  when the server accepts it; lenient parsing, then ONE repair turn asking for valid JSON.
- Failures (transport errors after the client's retries, refusals, invalid JSON after the
  repair) are stored with status 'failed' and counted; never dropped, never scored as zero.
- One request cache (steper_bench.cache.RequestCache); the transport teacher and students use
  (generation/transport.py): counted retries, replicas, bounded or `auto` concurrency.
- Pairwise: each question and ability asked as A/B and again as B/A; the two verdicts must
  agree, otherwise it is a tie.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from steper_bench.cache import RequestCache
from steper_bench.console import logged
from steper_bench.evaluation import store
from steper_bench.evaluation.abilities import ABILITIES as ABILITY_TABLE
from steper_bench.evaluation.abilities import graded_steps
from steper_bench.recipe import Recipe, RecipeError, expand_env

RUBRIC_VERSION = "steper-judge-v1"
RUBRIC_FILE = Path(__file__).with_name("rubric_v1.md")
ABILITIES = store.ABILITIES


@lru_cache(maxsize=1)
def rubric() -> dict[str, str]:
    """The rubric file's `## name` sections, by name."""
    text = RUBRIC_FILE.read_text(encoding="utf-8")
    if not text.startswith(f"# {RUBRIC_VERSION}"):
        raise RuntimeError(f"{RUBRIC_FILE} does not start with '# {RUBRIC_VERSION}': bump RUBRIC_VERSION with the text")
    parts = re.split(r"^## (\w+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


# -- settings and the client ------------------------------------------------------------------------


@dataclass
class JudgeSettings:
    model: str = "gpt-4o"
    base_url: str | list[str] | None = None  # one URL or replicas; None: OpenAI's
    api_key: str = field(default="", repr=False)
    concurrency: int | str = 16  # per endpoint, or "auto"
    timeout_s: float = 120.0
    max_retries: int = 6
    paragraph_chars: int = 1200
    max_tokens: int = 512  # a verdict is short; the cap bounds a rambling judge
    max_concurrency: int = 256
    api: str = "chat"  # chat | batch (OpenAI's Batch interface: one batch per round, then one for repairs)
    batch_poll_s: float = 30.0

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> JudgeSettings:
        from steper_bench.recipe import endpoint_urls

        j = recipe.eval.judge
        urls = [expand_env(u, what="eval.judge.base_url") for u in endpoint_urls(j.base_url)]
        try:
            key = expand_env(j.api_key, what="eval.judge.api_key") or ""
        except RecipeError:
            if not urls:  # OpenAI itself needs a key; a local server usually does not
                raise
            key = ""
        base_url = (urls[0] if len(urls) == 1 else urls) if urls else None
        return cls(j.model, base_url, key or "EMPTY", j.concurrency, j.timeout_s, j.max_retries,
                   recipe.framework.paragraph_chars, max_concurrency=j.max_concurrency, api=j.api,
                   batch_poll_s=j.batch_poll_s)

    @property
    def urls(self) -> list[str]:
        from steper_bench.generation.openai_compat import OPENAI_URL
        from steper_bench.recipe import endpoint_urls

        return endpoint_urls(self.base_url) or [OPENAI_URL]


@dataclass
class Answer:
    status: str  # ok | failed
    value: Any = None  # score (int) or winner ("A" | "B" | "tie")
    rationale: str = ""
    error: str = ""
    cached: bool = False


class JudgeClient:
    """Asks one judge model through the shared transport (generation/transport.py: its retries,
    routing over replicas, bounds); caches successes, records failures."""

    def __init__(self, settings: JudgeSettings, cache: RequestCache | None):
        from steper_bench.generation.openai_compat import settings_of
        from steper_bench.generation.transport import Transport

        self.s, self.cache = settings, cache
        urls = settings.urls[:1] if settings.api == "batch" else settings.urls  # a batch lives where it was sent
        self.transport = Transport(urls, settings.api_key, settings_of(settings))
        self._json_mode = True  # switched off once if the server rejects response_format

    def _key(self, messages: list[dict]) -> str:
        first = self.s.urls[0] if self.s.base_url else "openai"
        return RequestCache.key(kind="judge", base_url=first, model=self.s.model,
                                messages=messages, temperature=0.0, rubric_version=RUBRIC_VERSION)

    async def ask(self, messages: list[dict], kind: str) -> Answer:
        key = self._key(messages)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            value, why = parse_verdict(hit["text"], kind)
            return Answer("ok", value, why, cached=True)
        answer, text = await self._ask_with_repair(messages, kind)
        if self.cache is not None:
            if answer.status == "ok":
                self.cache.put(key, {"text": text})
            else:
                self.cache.record_failure(key, answer.error)
        return answer

    async def ask_all(self, reqs: list[tuple[list[dict], str]]) -> list[Answer]:
        if self.s.api == "batch":
            return await self._ask_all_batched(reqs)
        return list(await asyncio.gather(*(self.ask(m, kind) for m, kind in reqs)))

    async def _ask_with_repair(self, messages: list[dict], kind: str) -> tuple[Answer, str]:
        text, error = await self._chat(messages)
        if error:
            return Answer("failed", error=error), ""
        try:
            value, why = parse_verdict(text, kind)
            return Answer("ok", value, why), text
        except ValueError:
            pass
        text2, error = await self._chat(_repair(messages, text))
        if error:
            return Answer("failed", error=error), ""
        return _repaired(text2, kind), text2

    async def _ask_all_batched(self, reqs: list[tuple[list[dict], str]]) -> list[Answer]:
        """`api: batch`: every question in one batch, then the repair turns in a second one."""
        from steper_bench.generation.batch import BatchClient
        from steper_bench.generation.transport import chat_text

        batches = BatchClient(self.transport, self.cache, lambda b: chat_text(b)[0], poll_s=self.s.batch_poll_s)
        answers: list[Answer | None] = [None] * len(reqs)
        keys = [self._key(m) for m, _ in reqs]
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                answers[i] = Answer("ok", *parse_verdict(hit["text"], reqs[i][1]), cached=True)
        todo = [i for i, a in enumerate(answers) if a is None]
        first = await self._batch_json(batches, {keys[i]: reqs[i][0] for i in todo})
        texts, repairs = {}, {}
        for i in todo:
            a, kind = first[keys[i]], reqs[i][1]
            if a.error:
                answers[i] = Answer("failed", error=a.error)
                continue
            try:
                answers[i], texts[i] = Answer("ok", *parse_verdict(a.value, kind)), a.value
            except ValueError:
                repairs[i] = _repair(reqs[i][0], a.value)
        rkeys = {i: self._key(m) for i, m in repairs.items()}
        second = await self._batch_json(batches, {rkeys[i]: m for i, m in repairs.items()})
        for i in repairs:
            a = second[rkeys[i]]
            answers[i] = Answer("failed", error=a.error) if a.error else _repaired(a.value, reqs[i][1])
            texts[i] = a.value or ""
        for i in todo:
            if self.cache is not None:
                if answers[i].status == "ok":
                    self.cache.put(keys[i], {"text": texts[i]})
                else:
                    self.cache.record_failure(keys[i], answers[i].error)
        return answers  # type: ignore[return-value]

    async def _batch_json(self, batches, messages: dict[str, list[dict]]) -> dict:
        """custom_id -> batch Answer, in JSON mode while the endpoint takes it. Lines rejected over
        `response_format` (a 400 naming it, or a batch refused for it) go again, in one more batch
        without it, as the live path does; later batches leave it out from the start."""
        answers = await self._batch(batches, {k: self._body(m, self._json_mode) for k, m in messages.items()})
        if not self._json_mode:
            return answers
        rejected = [k for k, a in answers.items() if a.error and _json_mode_rejected(a.error)]
        if rejected:
            self._json_mode = False
            answers.update(await self._batch(batches, {k: self._body(messages[k], json_mode=False) for k in rejected}))
        return answers

    async def _batch(self, batches, bodies: dict[str, dict]) -> dict:
        """custom_id -> batch Answer; a batch that cannot be sent fails its requests, a rejected
        key or model stops the judge."""
        from steper_bench.generation import GeneratorError
        from steper_bench.generation.batch import Answer as Result
        from steper_bench.generation.batch import BatchError
        from steper_bench.generation.transport import Fatal

        if not bodies:
            return {}
        try:
            return await batches.run(list(bodies.items()))
        except BatchError as e:
            return {k: Result(error=str(e)) for k in bodies}
        except Fatal as e:
            raise GeneratorError(f"the judge endpoint answered {e.status} ({e.endpoint}, model {self.s.model!r}): "
                                 f"{e.message}; check eval.judge.base_url, model and api_key") from None

    def _body(self, messages: list[dict], json_mode: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.s.model, "messages": messages, "temperature": 0.0,
                                "max_tokens": self.s.max_tokens}
        return {**body, "response_format": {"type": "json_object"}} if json_mode else body

    async def _chat(self, messages: list[dict]) -> tuple[str, str]:
        """(content, error): error is non-empty when the transport gave up."""
        from steper_bench.generation import GeneratorError
        from steper_bench.generation.transport import Fatal, chat_text

        body = self._body(messages, json_mode=False)
        try:
            if self._json_mode:
                call = await self.transport.post("/chat/completions", self._body(messages), chat_text)
                rejected = call.status == 400 and ("response_format" in call.error or "json" in call.error.lower())
                if not rejected:
                    return (call.value[0] if not call.error else ""), call.error
                self._json_mode = False
            call = await self.transport.post("/chat/completions", body, chat_text)
        except Fatal as e:
            raise GeneratorError(f"the judge endpoint answered {e.status} ({e.endpoint}, model {self.s.model!r}): "
                                 f"{e.message}; check eval.judge.base_url, model and api_key") from None
        return (call.value[0] if not call.error else ""), call.error

    async def close(self) -> None:
        await self.transport.close()


def _json_mode_rejected(error: str) -> bool:
    """A batch line's (or a whole batch's) error that says the endpoint has no JSON mode: an
    HTTP 400 about response_format / JSON, or a batch that failed naming response_format."""
    low = error.lower()
    if error.startswith("HTTP 400"):
        return "response_format" in low or "json" in low.split(":", 1)[-1]
    return "response_format" in low


def _repair(messages: list[dict], text: str) -> list[dict]:
    """The one repair turn: the judge's reply and a request for valid JSON."""
    return [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": rubric()["repair"]}]


def _repaired(text: str, kind: str) -> Answer:
    try:
        return Answer("ok", *parse_verdict(text, kind))
    except ValueError as e:
        return Answer("failed", error=f"invalid JSON after the repair retry: {e}; reply: {text[:300]!r}")


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_verdict(text: str, kind: str) -> tuple[Any, str]:
    """Lenient: the JSON object anywhere in the text (code fences allowed), else a bare
    `"score": N` / `"winner": X`. Raises ValueError when nothing valid is found."""
    text = text or ""
    m = _FENCE.search(text)
    body = m.group(1) if m else text
    obj = None
    start, end = body.find("{"), body.rfind("}")
    if start != -1 and end > start:
        try:
            obj = json.loads(body[start:end + 1])
        except json.JSONDecodeError:
            obj = None
    field_name = "score" if kind == "score" else "winner"
    if not isinstance(obj, dict):
        pat = r'"?score"?\s*:\s*"?([1-5])\b' if kind == "score" else r'"?winner"?\s*:\s*"?(A|B|tie)\b'
        found = re.search(pat, body, re.I)
        if not found:
            raise ValueError(f"no JSON object with '{field_name}'")
        obj = {field_name: found.group(1)}
    return _check(obj, kind), str(obj.get("rationale", ""))[:2000]


def _check(obj: dict, kind: str) -> Any:
    if kind == "score":
        v = obj.get("score")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"score {v!r} is not a number") from None
        if f != int(f) or not 1 <= f <= 5:
            raise ValueError(f"score {v!r} is not an integer 1-5")
        return int(f)
    v = str(obj.get("winner", "")).strip()
    norm = {"a": "A", "b": "B", "tie": "tie"}.get(v.lower())
    if norm is None:
        raise ValueError(f"winner {v!r} is not A, B or tie")
    return norm


# -- what to judge, read from the store ----------------------------------------------------------------


@dataclass
class QuestionTrace:
    question_id: str
    question: str
    gold: list[str]
    prediction: str
    steps: list[dict]  # step, reasoning, context_pids (ordered)
    paragraphs: dict[str, dict]  # pid -> title, text, is_supporting
    support: list[tuple[str, str]]  # (title, sentence) reference
    framework: str = "ircot"  # the run's reasoning framework: which steps each ability grades

    def graded(self) -> list[tuple[str, int]]:
        from steper_bench.reasoning.frameworks import get_framework

        return graded_steps(get_framework(self.framework), len(self.steps))


def load_traces(con, run_id: str, support: dict[str, list] | None = None) -> dict[str, QuestionTrace]:
    out: dict[str, QuestionTrace] = {}
    row = con.execute("SELECT framework FROM runs WHERE run_id=?", [run_id]).fetchone()
    framework = (row[0] if row else None) or "ircot"  # runs stored before v2 were IRCoT
    for qid, question, gold, pred in con.execute(
        "SELECT question_id, question, gold, prediction FROM samples WHERE run_id=? ORDER BY question_id", [run_id]
    ).fetchall():
        out[qid] = QuestionTrace(qid, question, json.loads(gold), pred or "", [], {}, [], framework)
    for qid, step, reasoning, ctx in con.execute(
        "SELECT question_id, step, reasoning, context_pids FROM steps WHERE run_id=? ORDER BY question_id, step", [run_id]
    ).fetchall():
        if qid in out:
            out[qid].steps.append({"step": step, "reasoning": reasoning or "", "context_pids": json.loads(ctx)})
    for qid, pid, title, text, sup in con.execute(
        "SELECT question_id, pid, title, text, is_supporting FROM paragraphs WHERE run_id=?", [run_id]
    ).fetchall():
        if qid in out:
            out[qid].paragraphs[pid] = {"title": title, "text": text, "is_supporting": bool(sup)}
    for t in out.values():
        t.support = list((support or {}).get(t.question_id) or [])
        if not t.support:  # no gold sentences at hand: the supporting paragraphs' titles
            t.support = [(p["title"], "") for p in t.paragraphs.values() if p["is_supporting"]]
    return out


def _paragraph_block(t: QuestionTrace, pids: list[str], chars: int) -> str:
    lines = []
    for i, pid in enumerate(pids, 1):
        p = t.paragraphs.get(pid)
        if p is not None:
            lines.append(f"[{i}] {p['title']}: {p['text'][:chars]}")
    return "\n".join(lines) or "(none)"


def _reference(t: QuestionTrace) -> str:
    facts = "\n".join(f"- {title}: {s}" if s else f"- {title}" for title, s in t.support) or "- (none given)"
    return f"Gold answer: {' | '.join(t.gold)}\nGold supporting facts:\n{facts}"


def score_messages(t: QuestionTrace, ability: str, step: int, chars: int) -> list[dict]:
    r = rubric()
    s = t.steps[step - 1]
    earlier = "\n".join(f"{x['step']}. {x['reasoning']}" for x in t.steps[: step - 1]) or "(none)"
    user = (
        f"Ability to grade: {ability} (step {step} of {len(t.steps)})\n\n"
        f"Question: {t.question}\n\n{_reference(t)}\n\n"
        f"Paragraphs the model had at this step:\n{_paragraph_block(t, s['context_pids'], chars)}\n\n"
        f"Earlier reasoning sentences:\n{earlier}\n\n"
        f"Sentence to grade: {s['reasoning'] or '(empty)'}"
    )
    if ability == "aggregation":
        user += f"\nFinal answer extracted: {t.prediction or '(none)'}"
    return [{"role": "system", "content": f"{r['system']}\n\n{r[_rubric(ability)]}"}, {"role": "user", "content": user}]


def _rubric(ability: str) -> str:
    return next(a.rubric for a in ABILITY_TABLE if a.name == ability)


def _chain(t: QuestionTrace, ability: str) -> tuple[str, list[str]]:
    """The part of a chain one ability covers, and the paragraphs it drew on."""
    chosen = [(a, s) for a, s in t.graded() if a == ability]
    if not chosen:
        return "(no such step)", []
    text = "\n".join(f"{s}. {t.steps[s - 1]['reasoning'] or '(empty)'}" for _, s in chosen)
    if ability == "aggregation":
        text += f"\nFinal answer: {t.prediction or '(none)'}"
    return text, t.steps[chosen[-1][1] - 1]["context_pids"]


def pairwise_messages(first: QuestionTrace, second: QuestionTrace, ability: str, chars: int) -> list[dict]:
    r = rubric()
    text_a, pids_a = _chain(first, ability)
    text_b, pids_b = _chain(second, ability)
    merged = QuestionTrace(first.question_id, first.question, first.gold, "", [],
                           {**second.paragraphs, **first.paragraphs}, first.support)
    pids = list(dict.fromkeys([*pids_a, *pids_b]))
    user = (
        f"Ability to compare: {ability}\n\nQuestion: {first.question}\n\n{_reference(first)}\n\n"
        f"Paragraphs retrieved by either model:\n{_paragraph_block(merged, pids, chars)}\n\n"
        f"Response A:\n{text_a}\n\nResponse B:\n{text_b}"
    )
    system = f"{r['system']}\n\n{r['pairwise']}\n\n{r[_rubric(ability)]}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# -- running -----------------------------------------------------------------------------------------


@dataclass
class JudgeSummary:
    run_ids: list[str]
    judge_model: str
    rubric_version: str
    judged: int = 0
    ok: int = 0
    failed: int = 0
    cached: int = 0
    skipped_questions: int = 0  # questions with no steps at all (nothing to grade)
    means: dict[str, dict[str, float]] = field(default_factory=dict)  # run_id -> ability -> mean
    errors: list[str] = field(default_factory=list)  # a few failure messages, for the console
    seconds: float = 0.0
    endpoints: list[dict] = field(default_factory=list)  # per judge endpoint: url, calls, ok, failed, taken_out, limit


@dataclass
class PairwiseSummary:
    run_a: str
    run_b: str
    judge_model: str
    rubric_version: str
    # ability -> {"win": run_a wins, "tie": .., "loss": .., "failed": ..}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    endpoints: list[dict] = field(default_factory=list)  # per judge endpoint, as JudgeSummary's



def _open_cache(recipe: Recipe) -> RequestCache:
    from steper_bench.runs import RunPaths

    return RequestCache(RunPaths.for_recipe(recipe).cache)


def _support_from_recipe(recipe: Recipe, splits: set[str]) -> dict[str, list]:
    """Gold supporting sentences by question id, for the judge's reference; {} if unavailable."""
    out: dict[str, list] = {}
    try:
        from steper_bench.sources import load_questions

        for split in splits:
            for q in load_questions(recipe, split).questions:
                out[q.id] = list(q.supporting_sentences)
    except Exception:  # noqa: BLE001 - the reference falls back to supporting titles
        return out
    return out


@logged("judge")
def judge_runs(
    recipe: Recipe, *, db: str | Path, run_ids: list[str] | None = None,
    settings: JudgeSettings | None = None, cache: RequestCache | None = None,
) -> JudgeSummary:
    """Grade every step of the given runs (default: this recipe's finished runs) and store the
    judgments and judge metrics."""
    t0 = time.monotonic()
    settings = settings or JudgeSettings.from_recipe(recipe)
    con = store.connect(db, read_only=True)
    try:
        if run_ids is None:
            run_ids = [r[0] for r in con.execute(
                "SELECT run_id FROM runs WHERE recipe_name=? AND status='finished' ORDER BY run_id", [recipe.name]
            ).fetchall()]
        splits = {r[0] for r in con.execute("SELECT DISTINCT split FROM runs").fetchall() if r[0]}
        _require_runs(con, run_ids)
        support = _support_from_recipe(recipe, splits)
        traces = {rid: load_traces(con, rid, support) for rid in run_ids}
    finally:
        con.close()
    summary = JudgeSummary(list(run_ids), settings.model, RUBRIC_VERSION)
    jobs = []
    for rid, qs in traces.items():
        for t in qs.values():
            if not t.steps:
                summary.skipped_questions += 1
            for ability, step in t.graded():
                jobs.append((rid, t.question_id, ability, step, score_messages(t, ability, step, settings.paragraph_chars)))
    answers, summary.endpoints = _run_all(
        settings, cache if cache is not None else _open_cache(recipe), [(m, "score") for *_, m in jobs])
    rows = []
    for (rid, qid, ability, step, _), a in zip(jobs, answers):
        rows.append({
            "run_id": rid, "question_id": qid, "ability": ability, "step": step,
            "judge_model": settings.model, "rubric_version": RUBRIC_VERSION,
            "score": a.value if a.status == "ok" else None, "rationale": a.rationale,
            "status": a.status, "error": a.error or None, "created_at": store.utcnow(),
        })
        summary.judged += 1
        summary.ok += a.status == "ok"
        summary.failed += a.status == "failed"
        summary.cached += a.cached
        if a.status == "failed" and len(summary.errors) < 5:
            summary.errors.append(a.error)
    con = store.connect(db)
    try:
        store.write_judgments(con, rows)
        for rid in run_ids:
            m = store.read_metrics(con, rid)
            summary.means[rid] = {a: m[f"judge_{a}"]["mean"] for a in ABILITIES if f"judge_{a}" in m}
    finally:
        con.close()
    summary.seconds = time.monotonic() - t0
    return summary


@logged("judge")
def judge_pairwise(
    recipe: Recipe, *, db: str | Path, run_a: str, run_b: str,
    settings: JudgeSettings | None = None, cache: RequestCache | None = None,
) -> PairwiseSummary:
    """Compare two runs question by question per ability, in both orders."""
    t0 = time.monotonic()
    settings = settings or JudgeSettings.from_recipe(recipe)
    con = store.connect(db, read_only=True)
    try:
        _require_runs(con, [run_a, run_b])
        splits = {r[0] for r in con.execute("SELECT DISTINCT split FROM runs").fetchall() if r[0]}
        support = _support_from_recipe(recipe, splits)
        ta, tb = load_traces(con, run_a, support), load_traces(con, run_b, support)
    finally:
        con.close()
    common = sorted(set(ta) & set(tb))
    jobs, reqs = [], []
    for qid in common:
        for ability in ABILITIES:
            if not (_has(ta[qid], ability) or _has(tb[qid], ability)):
                continue  # e.g. two 2-step chains have no expansion step to compare
            jobs.append((qid, ability))
            reqs.append((pairwise_messages(ta[qid], tb[qid], ability, settings.paragraph_chars), "pairwise"))
            reqs.append((pairwise_messages(tb[qid], ta[qid], ability, settings.paragraph_chars), "pairwise"))
    answers, endpoints = _run_all(settings, cache if cache is not None else _open_cache(recipe), reqs)
    summary = PairwiseSummary(run_a, run_b, settings.model, RUBRIC_VERSION, endpoints=endpoints)
    rows = []
    for i, (qid, ability) in enumerate(jobs):
        ab, ba = answers[2 * i], answers[2 * i + 1]
        verdict, status, error = combine_orders(ab, ba)
        c = summary.counts.setdefault(ability, {"win": 0, "tie": 0, "loss": 0, "failed": 0})
        c[{"a": "win", "b": "loss", "tie": "tie", None: "failed"}[verdict]] += 1
        rows.append({
            "run_a": run_a, "run_b": run_b, "question_id": qid, "ability": ability,
            "judge_model": settings.model, "rubric_version": RUBRIC_VERSION, "verdict": verdict,
            "verdict_ab": ab.value, "verdict_ba": ba.value, "rationale_ab": ab.rationale,
            "rationale_ba": ba.rationale, "status": status, "error": error, "created_at": store.utcnow(),
        })
    con = store.connect(db)
    try:
        store.write_pairwise(con, rows)
    finally:
        con.close()
    summary.seconds = time.monotonic() - t0
    return summary


def _has(t: QuestionTrace, ability: str) -> bool:
    return any(a == ability for a, _ in t.graded())


def combine_orders(ab: Answer, ba: Answer) -> tuple[str | None, str, str | None]:
    """(verdict in run terms a | b | tie, status, error). In the A/B order 'A' is run a; in the
    swapped order 'A' is run b. Disagreement across the swap is a tie."""
    if ab.status != "ok" or ba.status != "ok":
        return None, "failed", ab.error or ba.error
    first = {"A": "a", "B": "b", "tie": "tie"}[ab.value]
    second = {"A": "b", "B": "a", "tie": "tie"}[ba.value]
    return (first if first == second else "tie"), "ok", None


def _require_runs(con, run_ids: list[str]) -> None:
    known = {r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()}
    missing = [r for r in run_ids if r not in known]
    if missing:
        raise store.StoreError(f"no run {', '.join(missing)} in this results file (known: {', '.join(sorted(known)) or 'none'})")


def _run_all(
    settings: JudgeSettings, cache: RequestCache | None, reqs: list[tuple[list[dict], str]]
) -> tuple[list[Answer], list[dict]]:
    """The answers, and the judge endpoints' counters (none when nothing was asked)."""
    async def main() -> tuple[list[Answer], list[dict]]:
        client = JudgeClient(settings, cache)
        try:
            return await client.ask_all(reqs), client.transport.endpoint_counters()
        finally:
            await client.close()

    return asyncio.run(main()) if reqs else ([], [])

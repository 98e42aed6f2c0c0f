"""Step-level measures that need no judge, and trajectories -> store rows.

lm-eval keeps only the final prediction; the step trace comes from our own trajectories:

- sp_recall after step t (IRCoT's retrieval recall): the fraction of the question's gold
  supporting paragraphs among the paragraphs the generator has seen by step t. Matched by title
  and text, not pid: a pooled corpus keeps the first pid seen for a paragraph (maybe another
  question's), and a file corpus has its own ids. Text is compared without whitespace, because
  the Wikipedia abstracts dump joins sentences with spaces where HotpotQA's contexts do not
  (IRCoT maps a gold paragraph to the corpus by fuzzy match instead). A paragraph with the gold's
  title but other text (another version of the article) does not count. None when the question
  has no supporting paragraphs marked.
- answer_in_retrieval: 1.0 when a normalised gold answer appears (token-bounded, the same test
  as Acc) in any paragraph retrieved for the question.
- steps used, stop reason (answered | max_steps | empty | failed), latency and tokens per question and
  per step.
"""

from __future__ import annotations

from steper_bench import metrics as M
from steper_bench.records import Paragraph, Question, Trajectory


def paragraph_key(p: Paragraph) -> tuple[str, str]:
    """What identifies a paragraph across corpora: its title and its text without whitespace."""
    return p.title.strip(), "".join(p.text.split())


def supporting_keys(q: Question) -> set[tuple[str, str]]:
    return {paragraph_key(p) for p in q.paragraphs if p.is_supporting}


def sp_recall(q: Question, traj: Trajectory, pids: list[str]) -> float | None:
    gold = supporting_keys(q)
    if not gold:
        return None
    seen = {paragraph_key(traj.paragraphs[p]) for p in pids if p in traj.paragraphs}
    return len(gold & seen) / len(gold)


def answer_in_retrieval(q: Question, traj: Trajectory) -> float:
    retrieved = {pid for s in traj.steps for pid in s.retrieved_pids}
    for pid in retrieved:
        p = traj.paragraphs.get(pid)
        if p is not None and M.acc(f"{p.title} {p.text}", q.answers):
            return 1.0
    return 0.0


def sample_row(run_id: str, q: Question, traj: Trajectory) -> dict:
    """One `samples` row. EM/F1/Acc from steper_bench.metrics on the loop's prediction: the
    same functions lm-eval's task calls, so the two agree by construction (and a test checks)."""
    scores = M.score(traj.prediction, q.answers, M.rule_for(q.dataset))
    last = traj.steps[-1].context_pids if traj.steps else []
    return {
        "run_id": run_id,
        "question_id": q.id,
        "question": q.question,
        "type": q.type,
        "gold": list(q.answers),
        "prediction": traj.prediction,
        **scores,
        "steps_used": len(traj.steps),
        "stop_reason": traj.stop_reason,
        "latency_s": float(sum(s.latency_s for s in traj.steps)),
        "tokens": int(sum(s.tokens for s in traj.steps)),
        "sp_recall": sp_recall(q, traj, last),
        "answer_in_retrieval": answer_in_retrieval(q, traj),
    }


def step_rows(run_id: str, q: Question, traj: Trajectory) -> list[dict]:
    return [
        {
            "run_id": run_id,
            "question_id": q.id,
            "step": s.index,
            "query": s.query,
            "retrieved_pids": list(s.retrieved_pids),
            "new_pids": list(s.new_pids),
            "context_pids": list(s.context_pids),
            "reasoning": s.reasoning,
            "latency_s": float(s.latency_s),
            "tokens": int(s.tokens),
            "sp_recall": sp_recall(q, traj, s.context_pids),
            "error": s.error or None,
        }
        for s in traj.steps
    ]


def paragraph_rows(run_id: str, q: Question, traj: Trajectory) -> list[dict]:
    gold = supporting_keys(q)
    return [
        {
            "run_id": run_id,
            "question_id": q.id,
            "pid": p.pid,
            "title": p.title,
            "text": p.text,
            "is_supporting": paragraph_key(p) in gold,
        }
        for p in traj.paragraphs.values()
    ]

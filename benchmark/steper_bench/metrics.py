"""Answer metrics: EM, F1, Acc, answer extraction and the build filter.

Each dataset scores by its official rule (`rule`, from the dataset's spec: `rule_for(dataset)`):
- hotpotqa (hotpot_evaluate_v1.py): SQuAD normalisation; F1 is 0 when either side normalises to
  yes / no / noanswer and the two differ (so "noanswer" never earns partial credit);
- 2wikimultihopqa (2wikimultihop_evaluate_v1.1.py): HotpotQA's EM and F1, with the answer's
  aliases and demonyms as more golds (source.aliases_file);
- musique (MuSiQue's metrics/answer.py, SQuAD 2.0's): the same normalisation and token F1, but
  no yes / no / noanswer rule; F1 is 1 when neither side has a token, 0 when one side has none.
With several gold answers (aliases) each metric is the maximum over them, as every official
script does. Acc is StepER's "gold answer contained in the prediction" after the same
normalisation, the same under every rule.

Build filtering (keep only correct teacher trajectories) and evaluation both use this module.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (SQuAD / HotpotQA)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    out = [golds] if isinstance(golds, str) else list(golds)
    if not out:
        raise ValueError("no gold answers to score against")
    return out


def _em_one(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


RULES = ("hotpotqa", "2wikimultihopqa", "musique")


def rule_for(dataset: str) -> str:
    """The metric rule of a registered dataset (its spec's `metric`); HotpotQA's for unknown names."""
    from steper_bench.registry import DATASETS

    try:
        rule = DATASETS.get(dataset).metric
    except KeyError:
        return "hotpotqa"
    return rule if rule in RULES else "hotpotqa"


def _f1_one(pred: str, gold: str, rule: str = "hotpotqa") -> float:
    p, g = normalize_answer(pred), normalize_answer(gold)
    if rule == "musique":
        if not p or not g:  # SQuAD 2.0: no-answer on either side scores 1 only when both agree
            return float(p == g)
    elif (p in _SPECIAL or g in _SPECIAL) and p != g:
        return 0.0
    common = Counter(p.split()) & Counter(g.split())
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p.split()), same / len(g.split())
    return 2 * precision * recall / (precision + recall)


def _acc_one(pred: str, gold: str) -> float:
    g = normalize_answer(gold)
    if not g:
        return 0.0
    # Token-boundary containment: "no" must not match inside "north".
    return float(f" {g} " in f" {normalize_answer(pred)} ")


def exact_match(pred: str, golds: str | Iterable[str], rule: str = "hotpotqa") -> float:
    return max(_em_one(pred, g) for g in _golds(golds))  # one EM under every rule


def f1_score(pred: str, golds: str | Iterable[str], rule: str = "hotpotqa") -> float:
    if rule not in RULES:
        raise ValueError(f"unknown metric rule {rule!r} (allowed: {', '.join(RULES)})")
    return max(_f1_one(pred, g, rule) for g in _golds(golds))


def acc(pred: str, golds: str | Iterable[str]) -> float:
    """1.0 when some normalised gold answer appears in the normalised prediction."""
    return max(_acc_one(pred, g) for g in _golds(golds))


def score(pred: str | None, golds: str | Iterable[str], rule: str = "hotpotqa") -> dict[str, float]:
    pred = pred or ""
    return {"em": exact_match(pred, golds), "f1": f1_score(pred, golds, rule), "acc": acc(pred, golds)}


# "So the answer is: X." (IRCoT / StepER) or "the answer is X"; the last occurrence wins.
_ANSWER = re.compile(r"the\s+answer\s+is\s*:?\s*", re.IGNORECASE)


def extract_answer(text: str | None) -> str | None:
    """The final answer stated in a reasoning text, or None when it states none."""
    if not text:
        return None
    matches = list(_ANSWER.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():].strip()
    rest = rest.splitlines()[0].strip() if rest else ""
    rest = rest.strip("\"'`“”‘’ ")
    rest = rest.rstrip(".").strip().strip("\"'`“”‘’ ")
    return rest or None


_F1_SPEC = re.compile(r"f1>=(0(?:\.\d+)?|1(?:\.0+)?)")


def check_filter(spec: str) -> str:
    """A build filter spec, validated: acc | em | all | f1>=x with x in [0, 1]."""
    if spec in ("acc", "em", "all") or _F1_SPEC.fullmatch(spec):
        return spec
    raise ValueError("allowed: acc, em, all, or f1>=x with x in [0, 1] (e.g. f1>=0.8)")


def passes_filter(scores: dict[str, float], spec: str) -> bool:
    """Whether a trajectory's scores pass a build filter: acc | em | all | f1>=x."""
    if check_filter(spec) == "all":
        return True
    if spec in ("acc", "em"):
        return scores[spec] >= 1.0
    return scores["f1"] >= float(_F1_SPEC.fullmatch(spec).group(1))

"""Functions the task YAMLs call through `!function`: the documents and the metrics.

Metrics are steper_bench.metrics (the same functions as `steper-bench score` and the build
filter), so lm-eval's numbers and ours cannot drift apart.
"""

from __future__ import annotations

import threading
import uuid

from steper_bench import metrics
from steper_bench.records import Question

# Documents handed over in process by evaluate(): key -> docs. The key travels to the loader
# through lm-eval's task metadata.
_DOCS: dict[str, list[dict]] = {}
_LOCK = threading.Lock()


def question_doc(q: Question) -> dict:
    """What lm-eval sees of a question (the model looks the full Question up by id)."""
    return {"id": q.id, "question": q.question, "answers": list(q.answers), "dataset": q.dataset, "type": q.type}


def register_docs(questions: list[Question]) -> str:
    key = uuid.uuid4().hex
    with _LOCK:
        _DOCS[key] = [question_doc(q) for q in questions]
    return key


def release_docs(key: str) -> None:
    with _LOCK:
        _DOCS.pop(key, None)


def load_docs(dataset: str | None = None, docs_key: str | None = None, recipe: str | None = None,
              sets: str = "", limit: str | int | None = None, **_ignored):
    """lm-eval `custom_dataset`: a DatasetDict with one `test` split.

    In process: `docs_key` from register_docs. From the CLI: `recipe` (a path) with optional
    `sets` ("a.b=1;c=2") and `limit`, passed as --model_args or --metadata.
    """
    import datasets

    if docs_key:
        with _LOCK:
            docs = _DOCS.get(docs_key)
        if docs is None:
            raise KeyError(f"no documents registered under {docs_key!r}")
    elif recipe:
        from steper_bench.recipe import load_recipe
        from steper_bench.sources import load_questions

        r = load_recipe(recipe, [s for s in str(sets).split(";") if s])
        qs = load_questions(r, r.eval.split).questions
        n = int(limit) if limit else r.eval.limit
        docs = [question_doc(q) for q in (qs[:n] if n else qs)]
    else:
        raise ValueError("steper tasks need docs: pass recipe=PATH in --model_args (or --metadata)")
    if dataset and docs and docs[0]["dataset"] != dataset:
        raise ValueError(f"task for {dataset} got {docs[0]['dataset']} questions: use steper_{docs[0]['dataset']}")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return metrics.score(results[0] if results else "", doc["answers"], metrics.rule_for(doc["dataset"]))

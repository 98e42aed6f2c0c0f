"""Paragraph files for `corpus.source: file`, streamed record by record (never read whole).

Formats (`corpus.format`; `auto` picks one from the file name):
- jsonl: one JSON object per line (`.jsonl`, `.json` lines; `.gz` / `.bz2` compressed too);
- parquet: columns read in batches with pyarrow;
- tsv: a header row naming the columns, then one paragraph per row (DPR's psgs_w100.tsv);
- hotpotqa-abstracts: the Wikipedia dump HotpotQA and IRCoT use
  (enwiki-20171001-pages-meta-current-withlinks-abstracts): a folder of `*/wiki_*.bz2` files of
  JSON lines with `id`, `title` and `text`, a list of sentences.
The id, title and text fields are named by `corpus.fields`. A text that is a list of sentences is
joined as IRCoT joins the abstracts: each sentence stripped, joined with one space.

Files are read in a fixed order (as listed; a folder's files sorted by path), so a position in
the stream, (file index, records read in it), is stable: an interrupted index resumes there.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from steper_bench.runs import atomic_write_text
from steper_bench.sources.base import SourceError

FORMATS = ("auto", "jsonl", "parquet", "tsv", "hotpotqa-abstracts")
ABSTRACTS_URL = (
    "https://nlp.stanford.edu/projects/hotpotqa/enwiki-20171001-pages-meta-current-withlinks-abstracts.tar.bz2"
)
Record = tuple[str, str, str]  # (pid, title, text)


class CorpusError(SourceError):
    """A corpus problem a user can act on: the message names the file, the field and the fix."""


@dataclass(frozen=True)
class FileSpec:
    paths: tuple[Path, ...]  # files or folders, resolved
    format: str = "auto"
    id_field: str = "id"
    title_field: str = "title"
    text_field: str = "text"

    def describe(self) -> dict:
        return {"format": self.format, "fields": [self.id_field, self.title_field, self.text_field]}


def _format_of(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz").removesuffix(".bz2")
    if name.endswith((".jsonl", ".json", ".ndjson")) or path.name.startswith("wiki_"):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".tsv"):
        return "tsv"
    return None


def missing_hint(spec: FileSpec, path: Path) -> str:
    if spec.format == "hotpotqa-abstracts":
        archive = ABSTRACTS_URL.rsplit("/", 1)[1]
        return (
            f"download the HotpotQA Wikipedia abstracts IRCoT uses ({ABSTRACTS_URL}, about 1.5 GB) and extract "
            f"it there: mkdir -p {path.parent} && tar -xjf {archive} -C {path.parent} (it unpacks to "
            f"{archive.removesuffix('.tar.bz2')}/), or set corpus.files to where it is"
        )
    return "set corpus.files to the corpus file or folder (paths are relative to the recipe's folder)"


def expand(spec: FileSpec) -> list[tuple[Path, str]]:
    """The files to read, in order, each with its format; a clear error when there are none."""
    out: list[tuple[Path, str]] = []
    for path in spec.paths:
        if not path.exists():
            raise CorpusError(f"corpus.files: {path} does not exist: {missing_hint(spec, path)}")
        if path.is_dir():
            out += _folder(path, spec)
            continue
        fmt = "jsonl" if spec.format == "hotpotqa-abstracts" else spec.format
        fmt = _format_of(path) if fmt == "auto" else fmt
        if fmt is None:
            raise CorpusError(
                f"corpus.files: cannot tell the format of {path.name}: set corpus.format to one of "
                f"{', '.join(FORMATS[1:])}"
            )
        out.append((path, fmt))
    return out


def _folder(path: Path, spec: FileSpec) -> list[tuple[Path, str]]:
    abstracts = sorted(path.rglob("wiki_*.bz2"))
    if spec.format in ("hotpotqa-abstracts", "auto") and abstracts:
        return [(f, "jsonl") for f in abstracts]
    files = [
        (f, spec.format if spec.format != "auto" else _format_of(f)) for f in sorted(path.rglob("*")) if f.is_file()
    ]
    files = [(f, fmt) for f, fmt in files if fmt is not None and fmt != "hotpotqa-abstracts"]
    if not files:
        want = "*/wiki_*.bz2 files" if spec.format == "hotpotqa-abstracts" else "paragraph files"
        raise CorpusError(f"corpus.files: {path} holds no {want}: {missing_hint(spec, path)}")
    return files


# -- reading ------------------------------------------------------------------------------------


def records(path: Path, fmt: str, spec: FileSpec, skip: int = 0) -> Iterator[Record]:
    """(pid, title, text) of one file, after its first `skip` records."""
    if fmt == "parquet":
        yield from _parquet(path, spec, skip)
        return
    with _open_text(path) as f:
        yield from (_jsonl(f, path, spec, skip) if fmt == "jsonl" else _tsv(f, path, spec, skip))


def _open_text(path: Path):
    name = path.name.lower()
    if name.endswith(".bz2"):
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8", newline="")
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _jsonl(f, path: Path, spec: FileSpec, skip: int) -> Iterator[Record]:
    n = 0
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue
        n += 1
        if n <= skip:
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{line_no}: invalid JSON ({e.msg}): fix or remove the line") from None
        if not isinstance(raw, dict):
            raise CorpusError(f"{path}:{line_no}: expected a JSON object per line, got {type(raw).__name__}")
        yield _record(raw, spec, f"{path}:{line_no}")


def _tsv(f, path: Path, spec: FileSpec, skip: int) -> Iterator[Record]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(f, delimiter="\t")
    header = next(reader, None)
    if header is None:
        return
    cols = {name: i for i, name in enumerate(header)}
    for i, row in enumerate(reader):
        if i < skip:
            continue
        yield _record({k: row[j] for k, j in cols.items() if j < len(row)}, spec, f"{path}:{i + 2}")


def _parquet(path: Path, spec: FileSpec, skip: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    for what, name in (("id", spec.id_field), ("title", spec.title_field), ("text", spec.text_field)):
        if name not in names:
            raise CorpusError(
                f"{path}: no column {name!r} (columns: {', '.join(sorted(names))}): set corpus.fields.{what}"
            )
    seen = 0
    for batch in pf.iter_batches(batch_size=8192, columns=[spec.id_field, spec.title_field, spec.text_field]):
        if seen + batch.num_rows <= skip:
            seen += batch.num_rows
            continue
        cols = batch.to_pydict()
        for j in range(max(0, skip - seen), batch.num_rows):
            raw = {k: v[j] for k, v in cols.items()}
            yield _record(raw, spec, f"{path} row {seen + j + 1}")
        seen += batch.num_rows


def _record(raw: dict, spec: FileSpec, where: str) -> Record:
    out = []
    for what, name in (("id", spec.id_field), ("title", spec.title_field), ("text", spec.text_field)):
        value = raw.get(name)
        if value is None:
            raise CorpusError(
                f"{where}: no field {name!r} (fields: {', '.join(sorted(map(str, raw)))}): "
                f"set corpus.fields.{what} to the field that holds the paragraph's {what}"
            )
        if isinstance(value, list) and what == "text":
            value = " ".join(str(s).strip() for s in value)
        out.append(str(value) if what == "id" else str(value).strip())
    return out[0], out[1], out[2]


# -- fingerprint -----------------------------------------------------------------------------------


def fingerprint(spec: FileSpec, memo: Path | None = None) -> str:
    """sha256 over the reading settings and every file's bytes (16 hex): names the corpus's index.
    Digests are remembered in `memo` by (path, size, mtime), so only a changed file is read again."""
    files = expand(spec)
    h = hashlib.sha256(json.dumps(spec.describe(), sort_keys=True).encode())
    for (_, fmt), digest in zip(files, file_digests([p for p, _ in files], memo)):
        h.update(f"\x00{fmt}\x00{digest}".encode())
    return h.hexdigest()[:16]


def file_digests(paths: list[Path], memo: Path | None = None) -> list[str]:
    """sha256 of each file's bytes, remembered in `memo` by (path, size, mtime)."""
    known = _read_memo(memo)
    out, changed = [], False
    for path in paths:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in known:
            known[key] = _file_digest(path)
            changed = True
        out.append(known[key])
    if changed and memo is not None:
        atomic_write_text(memo, json.dumps(known))
    return out


def _read_memo(memo: Path | None) -> dict:
    if memo is None or not memo.exists():
        return {}
    try:
        return json.loads(memo.read_text())
    except (json.JSONDecodeError, OSError):
        return {}


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()

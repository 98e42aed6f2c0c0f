"""Corpus files for tests: the HotpotQA Wikipedia-abstracts dump layout, from the shipped sample."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data"
HOTPOT_FILES = [DATA / "hotpotqa" / "train.jsonl", DATA / "hotpotqa" / "dev.jsonl"]


def write_abstracts_dump(folder: Path, files: list[Path]) -> list[dict]:
    """The HotpotQA abstracts layout, <folder>/AA/wiki_00.bz2 ..., of JSON lines whose `text` is
    the list of sentences, from the raw contexts of HotpotQA files (one record per title): as in
    the dump, sentences after the first mostly carry a leading space, and some do not."""
    seen, records = set(), []
    for f in files:
        for line in f.open(encoding="utf-8"):
            for title, sentences in json.loads(line)["context"]:
                if title not in seen:
                    seen.add(title)
                    records.append(
                        {
                            "id": str(10_000 + len(records)),
                            "url": f"https://en.wikipedia.org/wiki?curid={len(records)}",
                            "title": title,
                            "text": sentences,
                        }
                    )
    for i in range(0, len(records), 400):
        path = folder / ("AA" if i < 800 else "AB") / f"wiki_{i // 400:02d}.bz2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bz2.compress("".join(json.dumps(r) + "\n" for r in records[i : i + 400]).encode()))
    return records

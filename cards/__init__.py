"""Card templates (this package's *.md files) and the helpers that render and merge them.

Shared by dataset cards (build/publish) and model cards (train). This package is the repo's
`cards/` folder, installed as `steper_bench.cards`; the helpers live here (not in a
`steper_bench/cards.py` module, which would shadow this package and hide the templates).

    text = render_card("dataset_card.md", front_matter={...}, **ctx)
    merged = merge_card(existing_readme, text)   # keeps what users wrote outside our markers

Templates are Jinja2 files in the package `steper_bench.cards` (the repo's `cards/` folder),
rendered with StrictUndefined so a missing value fails loudly instead of printing nothing.
The YAML front matter is passed as a dict and dumped with yaml.safe_dump, so it is always valid
YAML whatever the values contain. Our generated body sits between BEGIN/END markers: a merge
replaces only that part of an existing card.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import jinja2
import yaml

BEGIN = "<!-- steper-bench:begin (generated; edits between these markers are replaced) -->"
END = "<!-- steper-bench:end -->"
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_SECTION = re.compile(re.escape(BEGIN.split(" (")[0]) + r".*?" + re.escape(END), re.S)


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(lambda name: resources.files("steper_bench.cards").joinpath(name).read_text("utf-8"))
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["to_yaml"] = dump_yaml
    return env


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)


def render_card(template_name: str, **ctx: Any) -> str:
    """Render a packaged card template. `front_matter` (a dict), if given, becomes the card's
    YAML header; the template renders the body (it sees `begin_marker` / `end_marker`)."""
    front = ctx.pop("front_matter", None)
    try:
        body = _env().get_template(template_name).render(begin_marker=BEGIN, end_marker=END, **ctx)
    except jinja2.TemplateNotFound:
        raise FileNotFoundError(f"card template {template_name!r} is not in the package steper_bench.cards") from None
    return join_front_matter(front, body) if front is not None else body


def split_front_matter(text: str) -> tuple[dict, str]:
    """(metadata dict, body) of a README; ({}, text) when it has no front matter."""
    m = _FRONT.match(text)
    if not m:
        return {}, text
    meta = yaml.safe_load(m.group(1)) or {}
    if not isinstance(meta, dict):
        raise ValueError("card front matter is not a YAML mapping")
    return meta, text[m.end():]


def join_front_matter(meta: dict, body: str) -> str:
    return f"---\n{dump_yaml(meta)}---\n\n{body.lstrip()}"


def merge_configs(old: list[dict], new: list[dict]) -> list[dict]:
    """`configs:` lists merged by config_name: ours replace theirs, others are kept in order."""
    ours = {c["config_name"]: c for c in new}
    merged = [ours.pop(c["config_name"], c) for c in old if isinstance(c, dict) and "config_name" in c]
    return merged + list(ours.values())


def merge_card(existing: str | None, new: str) -> str:
    """Update an existing README with a freshly rendered card, never blindly overwriting it.

    Front matter: the existing keys stay, ours are set on top; `configs` are merged by name
    (so configs pushed by others and `dataset_info` written by push_to_hub survive).
    Body: the part between our markers is replaced; a body without markers is kept and our
    section appended; an empty body (or one datasets generated) becomes ours.
    """
    if not existing or not existing.strip():
        return new
    old_meta, old_body = split_front_matter(existing)
    new_meta, new_body = split_front_matter(new)
    meta = {**old_meta, **new_meta}
    if "configs" in old_meta or "configs" in new_meta:
        meta["configs"] = merge_configs(old_meta.get("configs") or [], new_meta.get("configs") or [])
    section = _SECTION.search(new_body)
    ours = section.group(0) if section else new_body.strip()
    if _SECTION.search(old_body):
        body = _SECTION.sub(lambda _: ours, old_body, count=1)
    elif old_body.strip():
        body = old_body.rstrip() + "\n\n" + ours + "\n"
    else:
        body = new_body
    return join_front_matter(meta, body)

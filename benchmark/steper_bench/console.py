"""What a user sees: the suite's own lines on the console; other libraries' logging, warnings
and progress bars in the stage's log file (`runs/<name>-<build hash>/logs/<stage>.log`).

    quiet_libraries()                    # once, at CLI start, before heavy imports (not with -v)
    with stage_log(paths.root / "logs" / "train.log"):
        ...                              # transformers / datasets / lm-eval output -> that file

`-v/--verbose` keeps everything on the console, as the libraries print it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Libraries whose logging goes to the stage log (their own loggers, by name).
LIBRARIES = ("transformers", "datasets", "huggingface_hub", "lm_eval", "lm-eval", "accelerate", "trl", "peft",
             "httpx", "httpcore", "urllib3", "filelock", "fsspec", "sentence_transformers", "faiss",
             "bm25s", "openai", "asyncio", "py.warnings", "streamlit", "absl")

_quiet = False


class _StageHandler(logging.Handler):
    """Writes to the current stage's log file; drops records between stages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.stream = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None:
            try:
                self.stream.write(self.format(record) + "\n")
                self.stream.flush()
            except Exception:  # noqa: BLE001 - logging must never break a stage
                self.handleError(record)


_HANDLER = _StageHandler()


def quiet_libraries() -> None:
    """Route every library's output away from the console (call before importing them: tqdm and
    transformers read their settings at import)."""
    global _quiet
    _quiet = True
    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm bars: datasets, lm-eval, model loading
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.captureWarnings(True)  # warnings.warn(...) from libraries -> the stage log
    for name in LIBRARIES:
        _route(logging.getLogger(name))


def _route(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(_HANDLER)
    logger.propagate = False  # levels stay the libraries' own (warnings and up, mostly)


def _reroute_configured() -> None:
    """Libraries that install their own console handler on first use (transformers) or on a
    call (lm-eval's setup_logging): take the handlers back."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.disable_progress_bar()
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        if logger.handlers != [_HANDLER] or logger.propagate:
            _route(logger)


@contextmanager
def stage_log(path: Path | None) -> Iterator[None]:
    """Library output of one stage goes to `path` (appended), when the libraries are quiet."""
    if not _quiet or path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = _HANDLER.stream
    with open(path, "a", encoding="utf-8") as f:
        _HANDLER.stream = f
        _reroute_configured()
        try:
            yield
        finally:
            _reroute_configured()
            _HANDLER.stream = previous


def is_quiet() -> bool:
    return _quiet


def logged(stage: str):
    """Decorator for a stage function whose first argument is the recipe: library output during
    the call goes to runs/<name>-<build hash>/logs/<stage>.log."""
    import functools

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(recipe, *args, **kwargs):
            if not _quiet:
                return fn(recipe, *args, **kwargs)
            from steper_bench.runs import RunPaths

            with stage_log(RunPaths.for_recipe(recipe).logs / f"{stage}.log"):
                return fn(recipe, *args, **kwargs)

        return wrapper

    return deco


class Bar:
    """A rich progress bar (`enabled=False`: silent): `with Bar("index", total) as bar: bar.update(n, info)`."""

    def __init__(self, description: str, total: int | None, enabled: bool = True):
        self.description, self.total, self.enabled = description, total, enabled
        self._progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=12),
                                      MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    def update(self, completed: int, info: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, info=info)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

"""Training methods as data: which step-wise kinds a student trains on, and how their losses
are weighted. `train.methods` takes preset names or inline specs; both become a `Method`.

| preset | kinds | weighting | what it is | whose |
| --- | --- | --- | --- | --- |
| vanilla-kd | vanilla_kd (the complete chain) | uniform | "final-step data only" | paper |
| steper-first | first + final | uniform | step-data ablation: + first-step data | paper |
| steper-first-mid | first + mid + final | uniform | + mid-step data (equal weights) | paper |
| steper | first + mid + final | difficulty | StepER: learned uncertainty per kind | paper |

An inline spec names its kinds and weighting: `{name: fixed-2-1-1, kinds: [first, mid, final],
weighting: fixed, weights: {first: 2, mid: 1, final: 1}}` (the paper's fixed-weight comparison;
the weights are ours). Weightings (training/trainer.py):

- difficulty: sum_j exp(-s_j) L_j + s_j, s_j = log sigma_j^2 learned (Kendall et al. 2018);
- uniform:    sum_j L_j;
- fixed:      sum_j w_j L_j with the given weights,

where L_j is kind j's mean token cross-entropy. `vanilla_kd` is a kind of its own (the
`vanilla_kd` config) so that Vanilla-KD trains on the complete chain whatever
`dataset.final_target` says; with the default `final_target: chain` its rows equal `final`'s.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KINDS = ("first", "mid", "final", "vanilla_kd")  # dataset configs a method can train on
WEIGHTINGS = ("difficulty", "uniform", "fixed")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME.pattern)  # also the output folder's name: train/<name>-<hash>
    kinds: tuple[Literal["first", "mid", "final", "vanilla_kd"], ...]
    weighting: Literal["difficulty", "uniform", "fixed"] = "uniform"
    weights: dict[str, float] | None = None  # fixed weighting only: one positive weight per kind

    @model_validator(mode="after")
    def _consistent(self) -> Method:
        if not self.kinds:
            raise ValueError(f"method {self.name}: kinds is empty (choose from {', '.join(KINDS)})")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"method {self.name}: kinds {list(self.kinds)} repeat a kind")
        if self.weighting == "fixed":
            if not self.weights or set(self.weights) != set(self.kinds):
                raise ValueError(f"method {self.name}: weighting fixed needs weights for exactly its kinds "
                                 f"{list(self.kinds)}, e.g. weights: {{{', '.join(f'{k}: 1' for k in self.kinds)}}}")
            bad = {k: w for k, w in self.weights.items() if not w > 0}
            if bad:
                raise ValueError(f"method {self.name}: weights must be positive, got {bad}")
        elif self.weights is not None:
            raise ValueError(f"method {self.name}: weights are for weighting fixed (this one is {self.weighting})")
        return self

    def spec(self) -> dict:
        """What the method is, for hashes, summaries and the results store."""
        return {"kinds": list(self.kinds), "weighting": self.weighting, "weights": self.weights}

    def weight_list(self) -> list[float]:
        """Per-kind loss weights in kinds order (uniform and difficulty start at 1)."""
        return [float((self.weights or {}).get(k, 1.0)) for k in self.kinds]


PRESETS: dict[str, Method] = {m.name: m for m in (
    Method(name="vanilla-kd", kinds=("vanilla_kd",), weighting="uniform"),
    Method(name="steper-first", kinds=("first", "final"), weighting="uniform"),
    Method(name="steper-first-mid", kinds=("first", "mid", "final"), weighting="uniform"),
    Method(name="steper", kinds=("first", "mid", "final"), weighting="difficulty"),
)}
# Labels of evaluated systems that are not trained by a method.
UNTRAINED = ("teacher", "silver", "base")


def resolve(item: str | dict | Method) -> Method:
    """A preset name, an inline spec (dict) or a Method -> Method; unknown names list the presets."""
    if isinstance(item, Method):
        return item
    if isinstance(item, str):
        if item in PRESETS:
            return PRESETS[item]
        import difflib

        hint = difflib.get_close_matches(item, list(PRESETS), n=1)
        did = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ValueError(f"{item!r} is not a method preset{did} (presets: {', '.join(PRESETS)}; or an inline spec "
                         "{name, kinds, weighting, weights})")
    if isinstance(item, dict):
        method = Method.model_validate(item)
        preset = PRESETS.get(method.name)
        if preset is not None and preset != method:
            raise ValueError(f"method {method.name}: the name of a preset with another definition; rename it")
        return method
    raise ValueError(f"a method is a preset name or a spec mapping, got {type(item).__name__}")

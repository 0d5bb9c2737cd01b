"""The app's settings as one small record: defaults, option lists, labels (no streamlit).

A link reproduces a view because every sidebar widget is bound to a query
parameter named after its key (see ui/sidebar.py); the names below are those keys.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sipp_core.options import SIPP_METHODS

DEFAULT_MODEL = "lenet300"
DEFAULT_DATASET = "mnist5k"

METHOD_LABELS = {
    "sipp-hybrid": "SiPP hybrid (det. or sampled per row)",
    "sipp-det": "SiPP deterministic (top-m by s)",
    "sipp-rand": "SiPP sampling (importance sampling)",
    "wt": "WT: global magnitude",
    "layerwise": "Layer-wise magnitude",
    "snip": "SNIP",
    "uniform": "Uniform sampling",
    "random": "Random mask",
    "pfp": "PFP: whole channels by sensitivity (a smaller network)",
    "pfp-rand": "PFP sampled: channels drawn and reweighted",
    "filter-l1": "Filters by L1 norm, same share per layer",
    "filter-random": "Random filters, same share per layer",
}
MODES = ("keep ratio", "eps and delta")
PATCH_LABELS = {"max": "max over patches (paper; bounded)", "mean": "mean over patches (authors' det. variant, no bound)"}
ALLOCATION_LABELS = {"global": "global top-B (authors')", "bound-optimal": "bound-optimal per row"}


def one_two_five(lo_exp: int, hi_exp: int, upto: float | None = None) -> list[float]:
    """1, 2, 5 x 10^k from 10^lo_exp up to 10^hi_exp (or `upto`), as clean floats for log sliders."""
    out = []
    for k in range(lo_exp, hi_exp + 1):
        for m in (1, 2, 5):
            v = float(f"{m}e{k}")
            if upto is not None and v > upto:
                return out
            out.append(v)
    return out


KEEP_MIN, KEEP_MAX, KEEP_STEP = 0.005, 1.0, 0.005  # the keep-ratio slider
DELTA_OPTIONS = one_two_five(-16, -1, upto=0.5)  # 1e-16 ... 0.5
EPS_OPTIONS = one_two_five(-2, 2, upto=100.0)  # 0.01 ... 100


def fmt_num(v: float) -> str:
    """Compact label for a log-slider value: 1e-16, 2e-05, 0.5, 20."""
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a result. Cheap fields re-run at once; heavy ones need sensitivities."""

    model: str = DEFAULT_MODEL
    dataset: str = DEFAULT_DATASET
    method: str = "sipp-hybrid"
    mode: str = "keep ratio"
    keep_ratio: float = 0.10
    epsilon: float = 1.0
    delta: float = 1e-16
    auto_sample: bool = True
    sample_size: int = 152
    seed: int = 0
    patch_reduction: str = "max"
    device: str = "auto"
    allocation: str = "global"
    c_prime: float = 3.0

    @property
    def heavy_key(self) -> tuple:
        """What the sensitivities depend on (the cache key of prepare())."""
        return (self.model, self.dataset, None if self.auto_sample else int(self.sample_size), int(self.seed),
                self.patch_reduction, self.device)

    def prune_kwargs(self) -> dict:
        """Keyword arguments of sipp_core.pipeline.evaluate_prune for the cheap settings."""
        kw = dict(method=self.method, delta=float(self.delta), seed=int(self.seed),
                  allocation=self.allocation, c_prime=float(self.c_prime))
        if self.mode == "keep ratio":
            kw["keep_ratio"] = float(self.keep_ratio)
        else:
            kw["epsilon"] = float(self.epsilon)
        return kw

    def as_dict(self) -> dict:
        return asdict(self)


def check_settings(s: Settings) -> list[str]:
    """Human messages (with the fix) for settings the engine would reject; empty when fine."""
    problems = []
    if s.mode == "eps and delta" and s.method not in SIPP_METHODS:
        problems.append(
            f"{METHOD_LABELS.get(s.method, s.method)} has no error bound, so it cannot be driven by eps. "
            "Fix: switch the mode to 'keep ratio', or pick a SiPP method (hybrid, deterministic, sampling)."
        )
    if not (0 < s.keep_ratio <= 1) or math.isnan(s.keep_ratio):
        problems.append("The keep ratio must be in (0, 1]. Fix: move the keep-ratio slider.")
    if not (0 < s.delta < 1):
        problems.append("delta must be in (0, 1). Fix: pick a delta on the slider.")
    if not s.auto_sample and s.sample_size < 1:
        problems.append("|S| must be at least 1. Fix: raise the manual sample size or switch |S| to 'auto'.")
    if s.c_prime < 1:
        problems.append("C' must be at least 1. Fix: set C' to 3 (the authors' value) or more.")
    return problems

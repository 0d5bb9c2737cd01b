"""Every choice a user can make, named once: methods, patch reductions, allocations, devices, defaults.

The engine, the command line and the app's sidebar all import these names from
here. No torch: the sidebar and the command line's argument checks read them
without loading the engine.
"""
from __future__ import annotations

SIPP_METHODS = ("sipp-hybrid", "sipp-det", "sipp-rand")  # the methods with an eps/delta guarantee
BASELINE_METHODS = ("wt", "layerwise", "snip", "uniform", "random")
METHODS = SIPP_METHODS + BASELINE_METHODS
# whole channels: PFP (deterministic, sampled) and two filter baselines; they make the network physically smaller
STRUCTURED_METHODS = ("pfp", "pfp-rand", "filter-l1", "filter-random")
STRUCTURED_TARGETS = ("params", "flops")  # what a structured keep ratio counts
PATCH_REDUCTIONS = ("max", "mean")  # how a conv edge's sensitivity is reduced over patches
ALLOCATIONS = ("global", "bound-optimal")  # how a keep-ratio budget is spread over rows
DEVICES = ("auto", "cpu", "cuda")  # where training runs; sensitivities and pruning run on the CPU
# what is done to a user's .npz inputs before they reach a network: nothing (exact values; the default for
# an uploaded model), uint8 divided by 255, or standardised with the train split's statistics (as zoo
# models are trained)
PREPROCESSING = ("as-given", "scale", "standardize")

DEFAULT_DELTA = 1e-16  # the authors' default failure probability
DELTA_S = DEFAULT_DELTA  # the failure probability behind the |S| formula (the authors' value)
DEFAULT_METHOD = "sipp-hybrid"
DEFAULT_PATCH_REDUCTION = "max"
DEFAULT_ALLOCATION = "global"


def check_choice(value, options: tuple[str, ...], name: str) -> str:
    """value if it is one of options, else ValueError naming the argument and the choices."""
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return value

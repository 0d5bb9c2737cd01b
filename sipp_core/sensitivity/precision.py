"""Which arithmetic the screened conv engine's bounds use (docs/sipp.md §2.6): float64 for
pseudo-point layers, else float32 or bfloat16, chosen per machine (``SIPP_CONV_BOUNDS``).

The choice itself is cached in :mod:`sipp_core.sensitivity.api` (``_BF16_CPU``), beside the entry
points, so that a test resets one module."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import BadInput

BOUNDS_ENV = "SIPP_CONV_BOUNDS"  # auto (default) | float32 | bfloat16: which bounds path the screened engine takes
_POWER = 16  # p of the float32 and bfloat16 p-norm bounds (float64 layers use 32)


@dataclass(frozen=True)
class _Precision:
    """How the bounds S are computed.

    ``dtype``: S's dtype; ``power``: p; ``tiny``: a term below this may be lost to underflow
    (a block of n_b pairs loses at most floor = n_b * tiny); ``rel``: the margin e for S's
    relative rounding; ``scaling``: the dtype the factors are scaled and squared in.
    """

    dtype: torch.dtype
    power: int
    tiny: float
    rel: float
    scaling: torch.dtype

    @staticmethod
    def of(wide: bool, bf16: bool) -> "_Precision":
        """``wide``: float64 and p = 32 (pseudo-point layers, whose reciprocals span many orders of
        magnitude); else p = _POWER and S in bfloat16 when ``bf16`` (x^p and y^p rounded to 8 bits,
        S accumulated in float32 and rounded: three roundings of at most 2^-8 each: |e| < 2^-6,
        margin 2^-5), float32 otherwise."""
        if wide:
            return _Precision(torch.float64, 32, 2.0**-1021, 1e-9, torch.float64)
        if bf16:
            return _Precision(torch.bfloat16, _POWER, 2.0**-125, 2.0**-5, torch.float32)
        return _Precision(torch.float32, _POWER, 2.0**-125, 1e-4, torch.float32)


def _choose_bf16(choice: str) -> bool:
    """Whether the CPU bounds run in bfloat16, for a ``SIPP_CONV_BOUNDS`` value."""
    if choice not in ("auto", "float32", "bfloat16"):
        raise BadInput(f"{BOUNDS_ENV}={choice!r} is not a bounds path",
                       f"set {BOUNDS_ENV} to auto, float32 or bfloat16, or unset it")
    if choice == "float32":
        return False
    if choice == "auto" and not _native_bf16():
        return False
    if not bf16_accumulates_in_float32():
        if choice == "bfloat16":
            raise BadInput(f"{BOUNDS_ENV}=bfloat16 was asked for, but this CPU's bfloat16 products do not "
                           "accumulate in float32, which the bounds' margins need",
                           f"unset {BOUNDS_ENV} (or set it to float32)")
        return False
    return True


def _native_bf16() -> bool:
    """The CPU has bfloat16 dot products and torch's kernels may use them (not capped below AVX-512)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    capped = torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2")  # e.g. ATEN_CPU_CAPABILITY=avx2
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and not capped


def bf16_accumulates_in_float32() -> bool:
    """512 ones multiply-add to 512 only if the bfloat16 product accumulates in float32."""
    ones = torch.ones(1, 1, 512, dtype=torch.bfloat16)  # (1, 1, 512)
    return float(torch.bmm(ones, ones.transpose(1, 2))) == 512.0

"""Process-wide torch settings shared by the app, the command line and benchmarks."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 64 * 2**20
_TRIM_THRESHOLD = 128 * 2**20
_allocator: bool | None = None


def torch_threads() -> int:
    """Intra-op threads for the app process: SIPP_TORCH_THREADS, else half the cores (at most 4, at least 1).

    The app runs one script thread per browser session, so cross-session parallelism comes from
    those threads; a wide intra-op pool on a small or busy machine mostly spins. Measured on a
    loaded 2-core box: evaluate_prune for lenet300 took 0.2 s with 1 thread and 4-6 s with 2.
    """
    env = os.environ.get("SIPP_TORCH_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def configure_allocator() -> bool:
    """Let glibc serve blocks of up to 64 MiB from its heap and keep up to 128 MiB free there.

    By default glibc maps every block above its (adaptive, at most 32 MiB) threshold
    fresh from the OS and returns it on free, so each large tensor of a batched pass
    pays page faults and zeroing on every use: a conv over a CIFAR-sized batch of 183
    points took 17 ms instead of 6.6 ms, and sensitivities of ResNet20 ~5% longer.
    The cost is up to 128 MiB of freed memory the process keeps for reuse. Once per
    process; glibc (Linux) only; SIPP_MALLOC=default leaves malloc alone. Returns
    whether the settings are in effect.
    """
    global _allocator
    if _allocator is None:
        _allocator = False
        if sys.platform.startswith("linux") and os.environ.get("SIPP_MALLOC", "").strip().lower() != "default":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = libc.mallopt  # absent on non-glibc C libraries (musl)
                _allocator = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
                    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
            except (OSError, AttributeError):
                _allocator = False
    return _allocator


def configure_torch() -> int:
    import torch  # deferred: the app imports this module first thing; torch loads only when it is configured

    configure_allocator()
    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

"""Process-wide torch settings shared by the app, the command line and benchmarks."""
from __future__ import annotations

import os


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


def configure_torch() -> int:
    import torch

    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

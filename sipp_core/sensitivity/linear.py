"""The Linear engine: M = max over points of a_j / z^sigma_f, by the blocked max-times product
(docs/sipp.md §2.6)."""
from __future__ import annotations

import torch

from .budget import _Budget
from .kernels import _maxtimes, _maxtimes2, _recip, _signed


def _linear_max(a: torch.Tensor, w: torch.Tensor, budget: _Budget, negative: bool) -> torch.Tensor:
    """M (2F, J) = max over points of a_j / z^sigma_f for a Linear layer, a (N, J)."""
    ws = _signed(w)  # (G, J)
    n = a.shape[0]
    if negative:
        ap, an = a.clamp(min=0), (-a).clamp(min=0)  # (N, J) each
        r = _recip(torch.cat([ap, an]) @ ws.T)  # (2N, G)
        r_pair = torch.stack([r[:n], r[n:]], dim=2)  # (N, G, 2)
        a_pair = torch.stack([ap, an], dim=1)  # (N, 2, J)
        return _maxtimes2(r_pair, a_pair, budget)
    r = _recip(a @ ws.T)  # (N, G)
    return _maxtimes(r, a, budget)

"""Which channels each layer keeps, given how many: the rule of each structured method.

- pfp: the n channels with the largest sensitivity, weights unchanged (the paper's experiments);
- pfp-rand: m~ draws from p = s / sum(s) (m~ chosen so that about n distinct channels are hit), each
  kept channel's weights multiplied by n_j / (m~ p_j), the unbiased importance-sampling estimate
  that the eps/delta guarantee is about;
- filter-l1 and filter-random: whole filters (output channels) of each layer, the same share in every
  layer, by largest L1 norm of the filter (Li et al. 2017) or at random.

Ties are broken by channel index, and sampling uses numpy's seeded generator, so the same settings give
the same channels on every machine.
"""
from __future__ import annotations

import numpy as np

from .budget import adapt_draws


def top_channels(scores: np.ndarray, n: int) -> np.ndarray:
    """Multipliers (1 kept, 0 removed) keeping the n largest scores; ties go to the lower index."""
    order = np.lexsort((np.arange(len(scores)), -scores))  # by score descending, then index
    keep = np.zeros(len(scores))
    keep[order[:n]] = 1.0
    return keep


def sampled_channels(p: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(multipliers, draws): counts ~ Multinomial(m~, p), multiplier n_j / (m~ p_j) (0 where not drawn)."""
    m = adapt_draws(p, n)
    gamma = np.zeros(len(p))
    if m <= 0:
        return gamma, 0
    counts = rng.multinomial(m, p / p.sum())
    hit = counts > 0
    gamma[hit] = counts[hit] / (m * p[hit])
    return gamma, m


def filter_scores(weight: np.ndarray) -> np.ndarray:
    """L1 norm of each filter (output channel): the sum of |w| over its inputs and taps."""
    return np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1)


def filters_kept(filters: dict[str, int], share: float) -> dict[str, int]:
    """{layer: filters kept}: the same share of filters in every layer, at least 1 each. The shares are
    rounded by largest remainder, so the total is round(share * all filters) and the network's size moves
    one filter at a time as the share grows (a budget can then be met closely)."""
    exact = {n: share * f for n, f in filters.items()}
    counts = {n: int(np.floor(v)) for n, v in exact.items()}
    extra = int(round(share * sum(filters.values()))) - sum(counts.values())
    for n in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:max(0, extra)]:
        counts[n] += 1
    return {n: max(1, min(filters[n], c)) for n, c in counts.items()}

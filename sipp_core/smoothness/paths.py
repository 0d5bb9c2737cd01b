"""Straight input paths for the nonsmoothness sweep (docs/nonsmoothness.md §1 and 5).

A path is x(t) = x_a + t (x_b - x_a), t_i = i / (N - 1), i = 0 .. N-1. Only
the endpoints are stored; points are generated chunk by chunk, so that
memory stays bounded, and identically for every model, so an original and a
pruned copy see exactly the same inputs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

PATH_KINDS = ("same-class", "different-class", "local")
MAKE_KINDS = ("mixed",) + PATH_KINDS
LOCAL_RADIUS_FRACTION = 0.05  # default radius: this fraction of the median held-out pair distance


@dataclass(frozen=True, eq=False)
class Paths:
    """P straight segments of N points each, with where they came from.

    x_a, x_b: (P, *input_shape) endpoints (float, CPU).
    anchor: (P, *input_shape) a held-out input on each path: x_a for pairs,
        the centre for local segments (where the Jacobian is evaluated).
    kinds: "same-class" | "different-class" | "local" per path.
    labels_a, labels_b: (P,) int64 labels of the endpoints' source points (-1 if unknown).
    index_a, index_b: (P,) int64 rows of x_test used (index_b = index_a for local).
    """

    x_a: torch.Tensor
    x_b: torch.Tensor
    anchor: torch.Tensor
    kinds: tuple[str, ...]
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    index_a: torch.Tensor
    index_b: torch.Tensor
    points: int = 1024
    seed: int = 0
    radius: float = 0.0

    def __post_init__(self):
        if self.x_a.shape != self.x_b.shape or self.x_a.ndim < 2:
            raise ValueError(f"x_a and x_b must both be (P, *input_shape); got {tuple(self.x_a.shape)}, {tuple(self.x_b.shape)}")
        if len(self.kinds) != self.x_a.shape[0]:
            raise ValueError("kinds must have one entry per path")
        if self.points < 5:
            raise ValueError(f"points must be at least 5, got {self.points}")

    @property
    def count(self) -> int:
        return int(self.x_a.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_a.shape[1:])

    @property
    def step(self) -> float:
        """h = 1 / (N - 1)."""
        return 1.0 / (self.points - 1)

    @property
    def lengths(self) -> torch.Tensor:
        """(P,) float64 ||x_b - x_a||."""
        return (self.x_b.double() - self.x_a.double()).flatten(1).norm(dim=1)

    def t(self, dtype=torch.float64) -> torch.Tensor:
        """(N,) the path parameters t_i = i / (N - 1)."""
        return (torch.arange(self.points, dtype=torch.float64) / (self.points - 1)).to(dtype)

    def chunk(self, paths, start: int, stop: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """Points start .. stop-1 of the selected paths: (G, stop - start, *input_shape).

        paths: an index tensor, list or slice into the P paths.
        """
        xa = self.x_a[paths].to(torch.float64)
        dx = (self.x_b[paths].to(torch.float64) - xa).to(dtype=dtype, device=device).flatten(1)
        xa = xa.to(dtype=dtype, device=device).flatten(1)
        t = self.t()[start:stop].to(dtype=dtype, device=device)
        x = torch.addcmul(xa.unsqueeze(1), t.reshape(1, -1, 1), dx.unsqueeze(1))  # (G, T, D) in one pass
        return x.reshape(x.shape[0], x.shape[1], *self.input_shape)

    def segment(self, i: int, dtype=torch.float32) -> torch.Tensor:
        """All N points of path i: (N, *input_shape)."""
        return self.chunk([i], 0, self.points, dtype)[0]

    def with_points(self, points: int) -> "Paths":
        """The same segments sampled with a different N."""
        return dataclasses.replace(self, points=int(points))

    def select(self, index) -> "Paths":
        """A subset of the paths (index: list / tensor of path numbers)."""
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        return dataclasses.replace(
            self, x_a=self.x_a[idx], x_b=self.x_b[idx], anchor=self.anchor[idx],
            kinds=tuple(self.kinds[i] for i in idx.tolist()), labels_a=self.labels_a[idx],
            labels_b=self.labels_b[idx], index_a=self.index_a[idx], index_b=self.index_b[idx])


def segment_paths(x_a, x_b, *, points: int = 1024, kind: str = "custom") -> Paths:
    """Paths from explicit endpoints (P, *shape) each, e.g. for constructed tests."""
    xa = torch.as_tensor(x_a).detach().cpu()
    xb = torch.as_tensor(x_b).detach().cpu()
    if not torch.is_floating_point(xa):
        xa, xb = xa.float(), xb.float()
    p = xa.shape[0]
    none = torch.full((p,), -1, dtype=torch.long)
    return Paths(xa, xb, xa.clone(), (kind,) * p, none, none.clone(), none.clone(), none.clone(), points=int(points))


def _split_mixed(count: int) -> dict[str, int]:
    local = count // 3
    same = (count - local + 1) // 2
    return {"same-class": same, "different-class": count - local - same, "local": local}


def make_paths(
    x_test,
    y_test=None,
    *,
    count: int = 32,
    points: int = 1024,
    kind: str = "mixed",
    radius: float | None = None,
    seed: int = 0,
) -> Paths:
    """Seeded straight paths between / around held-out inputs (docs/nonsmoothness.md §5).

    Args:
        x_test: (M, *input_shape) held-out inputs.
        y_test: (M,) integer labels; needed for same-class / different-class pairs.
        count: number of paths P. "mixed" gives about a third of each kind.
        points: N samples per path (t_i = i / (N - 1)).
        kind: "mixed", "same-class", "different-class" or "local".
        radius: half-length r of local segments x -+ r u (u a random unit direction);
            default 0.05 x the median distance between random held-out pairs.
        seed: all random choices come from this seed.
    Returns:
        Paths (endpoints only; points are generated lazily).
    Raises:
        ValueError: bad count / points / kind / radius, labels missing, or no
            class with two points (same-class) or only one class (different-class).
    """
    if kind not in MAKE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(MAKE_KINDS)}; got {kind!r}")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if not isinstance(points, int) or points < 5:
        raise ValueError(f"points must be an integer >= 5, got {points!r}")
    if radius is not None and not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    x = torch.as_tensor(x_test).detach().cpu()
    if not torch.is_floating_point(x):
        x = x.float()
    m = x.shape[0]
    if x.ndim < 2:
        raise ValueError(f"x_test must be (M, *input_shape) with at least one feature dim, got {tuple(x.shape)}")
    if m < 2:
        raise ValueError(f"need at least 2 held-out inputs, got {m}")
    y = None if y_test is None else torch.as_tensor(y_test).detach().cpu().long().reshape(-1)
    if y is not None and y.shape[0] != m:
        raise ValueError(f"y_test has {y.shape[0]} labels for {m} inputs")
    counts = _split_mixed(count) if kind == "mixed" else {kind: count}
    if y is None and (counts.get("same-class", 0) or counts.get("different-class", 0)):
        raise ValueError("y_test is needed for same-class / different-class paths; pass labels or kind='local'")
    gen = torch.Generator().manual_seed(int(seed))
    flat = x.flatten(1).double()
    if radius is None:
        i = torch.randint(m, (256,), generator=gen)
        j = (i + torch.randint(1, m, (256,), generator=gen)) % m  # j != i
        radius = LOCAL_RADIUS_FRACTION * float((flat[i] - flat[j]).norm(dim=1).median())
        if not radius > 0:
            raise ValueError("held-out inputs are all identical; pass radius explicitly")
    ia, ib, kinds = [], [], []
    for k in PATH_KINDS:
        n = counts.get(k, 0)
        if n == 0:
            continue
        if k == "local":
            a = torch.randint(m, (n,), generator=gen)
            b = a
        else:
            a, b = _pairs(y, n, same=(k == "same-class"), gen=gen)
        ia.append(a)
        ib.append(b)
        kinds += [k] * n
    ia, ib = torch.cat(ia), torch.cat(ib)
    xa, xb = x[ia].clone(), x[ib].clone()
    is_local = torch.tensor([k == "local" for k in kinds])
    if bool(is_local.any()):
        n = int(is_local.sum())
        u = torch.randn((n, flat.shape[1]), generator=gen, dtype=torch.float64)
        u = (u / u.norm(dim=1, keepdim=True)).reshape(n, *x.shape[1:])
        centre = x[ia[is_local]].double()
        xa[is_local] = (centre - radius * u).to(x.dtype)
        xb[is_local] = (centre + radius * u).to(x.dtype)
    labels = y if y is not None else torch.full((m,), -1, dtype=torch.long)
    return Paths(
        x_a=xa, x_b=xb, anchor=x[ia].clone(), kinds=tuple(kinds), labels_a=labels[ia].clone(),
        labels_b=labels[ib].clone(), index_a=ia, index_b=ib, points=points, seed=int(seed), radius=float(radius),
    )


def _pairs(y: torch.Tensor, n: int, *, same: bool, gen: torch.Generator):
    """n index pairs (i, j), i != j, with y_i == y_j (same) or y_i != y_j; j uniform among those allowed.

    O(M) memory: points are sorted by class, and the partner is the r-th
    allowed point in that order (skipping i itself, or i's whole class).
    """
    m = y.shape[0]
    _, cls = torch.unique(y, return_inverse=True)  # (M,) class ids 0 .. K-1
    order = torch.argsort(cls, stable=True)
    counts = torch.bincount(cls)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.empty(m, dtype=torch.long)
    pos[order] = torch.arange(m)  # position of each point in sorted order
    size = counts[cls]  # class size of each point
    partners = size - 1 if same else m - size
    ok = (partners > 0).nonzero().reshape(-1)
    if ok.numel() == 0:
        what = "no class has two held-out points" if same else "all held-out points share one class"
        raise ValueError(f"cannot make {'same' if same else 'different'}-class paths: {what}")
    a = ok[torch.randint(ok.numel(), (n,), generator=gen)]
    r = (torch.rand(n, generator=gen, dtype=torch.float64) * partners[a]).long().clamp_max(partners[a] - 1)
    c = cls[a]
    if same:
        r = r + (r >= pos[a] - starts[c]).long()  # skip a itself
        b = order[starts[c] + r]
    else:
        r = r + (r >= starts[c]).long() * counts[c]  # skip a's class block
        b = order[r]
    return a, b

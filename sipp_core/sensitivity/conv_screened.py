"""The screened engine for conv layers with the max reduction (docs/sipp.md §2.6).

M (2F, J), exact, by bounding blocks of patches with p-norms (matrix products) and
evaluating exactly only the blocks that may still hold a (row, column) max.

The points are taken in spans, as many as the budget holds the bounds and the
reciprocals of. In a span, rho_r = max of row r's reciprocals and alpha_c = max of
input channel c, so every factor x = R / rho and y = A / alpha lies in [0, 1]. For a
block b of at most n_b (point, patch) pairs, S_b = sum (x y)^p (batched matrix
products, in small chunks of points) satisfies, in units of (rho_r alpha_c)^p
(e: relative rounding of S, floor: terms lost to underflow),

    max_b^p <= S_b (1 + e) + floor   and   max_b^p >= (S_b (1 - e) - floor) / n_b.

L[r, j] is the best lower bound known so far (attained products or the bound
above). Each (row, column)'s most promising block of the span (largest S) is
evaluated exactly first where it can beat L; then every other block whose upper
bound is not strictly below L. A block is skipped only on that strict inequality:
every product in it then rounds to at most L, so the max is found among the
evaluated blocks, exactly as the direct engine finds it. (Row, column) pairs whose
products in a span all sit below the float range of the bounds are deferred and
evaluated at the end unless the span's bound for them falls below the final L.
The arithmetic of S (float64, float32 or bfloat16, and p) is in precision.py.

Names: G = 2F signed rows, J = C kh kw input columns, P patches. A "pair" is a
(row, column) entry of M; there are GJ. Per-pair arrays are shaped PS = (G, J), or
(J, G) with bfloat16 bounds (``flip``: S as y^p @ (x^p)^T, ~10-25% faster there),
and a flat pair index runs over PS. A "block" holds about 64 (point, patch) pairs
(blocks.py); a "run" is _RUN consecutive blocks, whose max of S is kept to search
them fast (keys.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .blocks import _Blocks, _exact_blocks, _exact_blocks_take
from .budget import _Budget
from .conv_output import ConvOutput
from .geometry import _Geometry, _Points
from .kernels import _pow, _recip, _signed
from .keys import _candidates, _first_argmax, _key_values, _keys, _keys_at_most, _run_blocks
from .precision import _Precision

_CHUNK_SHARE = 0.25  # at most this share of the screened engine's budget for one chunk
_MIN_CHUNK = 8  # points: the screened engine's chunks are not made smaller to fit fewer spans
_RUN = 8  # blocks per run in candidate selection (one max per run first)


def _conv_max_screened(
    pts: _Points, w: torch.Tensor, geo: _Geometry, budget: _Budget, wide: bool = False,
    out_y: ConvOutput | None = None, bf16: bool = False,
) -> torch.Tensor:
    """M (2F, J) of a conv layer's points, exact (see the module doc); w (F, J).

    ``wide``: float64 bounds and p = 32 (pseudo-point layers); else ``bf16`` picks
    bfloat16 bounds over float32 (:class:`_Precision`). ``out_y`` receives the layer's
    partial pre-activations (conv_output)."""
    return _ScreenedConv(pts, w, geo, budget, _Precision.of(wide, bf16), out_y).run()


def _even_chunks(n_pts: int, step: int, group: int) -> list[int]:
    """Chunk starts (and the end) for n_pts points in chunks of at most step points, as
    even as whole groups allow: no lone-point tail (a one-point conv may round differently)."""
    units = -(-n_pts // group)
    count = -(-units // max(1, step // group))
    return [min(n_pts, (units * c // count) * group) for c in range(count + 1)]


def _unit_scale(top: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(inv, scale): inv ~ 1/top in ``dtype`` (0 where top = 0, capped to stay finite) and
    scale = 1/inv in float64, exactly consistent with the factor used."""
    inv = torch.where(top > 0, 1.0 / top.double(), torch.zeros((), dtype=torch.float64, device=top.device))
    inv = inv.clamp(max=2.0**120).to(dtype)
    scale = torch.where(inv > 0, 1.0 / inv.double(), torch.zeros((), dtype=torch.float64, device=top.device))
    return inv, scale


@dataclass(frozen=True)
class _Steps:
    """How many points the screened engine takes at a time, sized to the budget."""

    exact: int  # points unfolded at once to evaluate blocks exactly
    chunk: int  # points per batched product of the bounds
    span: int  # points whose bounds are held at once (the largest span)
    spans: list  # span starts, and the end
    run: int  # blocks per run (S is padded to whole runs)
    pieces: int  # float32 elements of the scratch in which x^p is squared piece by piece

    @staticmethod
    def plan(n_pts: int, g_rows: int, j_cols: int, point: int, lay: _Blocks, prec: _Precision,
             budget: _Budget) -> "_Steps":
        """As few spans as the budget allows (each span evaluates its pairs' best blocks), then
        chunks as large as what is left allows, up to a cache-friendly share."""
        group, ppad = lay.group, lay.ppad
        esize = prec.dtype.itemsize / 4
        blocks = lay.per_point / group  # per point
        # float32 elements per point, kept for a span (S with its run maxima, reciprocals,
        # points) and used per chunk (z, x^p, y^p unfolded and in blocks, scaled points)
        kept = blocks * (g_rows * j_cols) * esize * (1 + 1 / _RUN) + g_rows * ppad + point
        work = g_rows * ppad * (1 + esize) + j_cols * ppad * 2 * esize + point * (prec.scaling.itemsize / 4 + esize)
        pieces = max(budget.elems(), g_rows * ppad * group)  # x^p squared piece by piece
        total = budget.big_elems() - pieces - budget.elems(2)  # and the exact products' gathered rows
        exact = max(group, min(budget.elems(), total // 8) // (j_cols * ppad) // group * group)
        total -= lay.rows(exact) * j_cols * ppad
        chunk_cap = max(group, int(total * _CHUNK_SHARE // work) // group * group)
        chunk = min(chunk_cap, max(group, _MIN_CHUNK // group * group))
        span = max(chunk, int((total - chunk * work) // kept) // group * group)
        spans = _even_chunks(n_pts, span, group)
        span = max(b - a for a, b in zip(spans, spans[1:]))
        chunk = max(chunk, min(chunk_cap, int((total - span * kept) // work) // group * group))
        chunk, exact = min(chunk, span), min(exact, span)
        return _Steps(exact, chunk, span, spans, min(_RUN, lay.count(span)), pieces)


@dataclass(frozen=True)
class _Span:
    """Points start .. end - 1 of the layer, loaded: padded points and their reciprocals."""

    start: int
    end: int
    points: torch.Tensor  # (n, C, Hp, Wp)
    recips: torch.Tensor  # (rows, G, ppad): 1/z in natural layout (blocks.py)
    chunks: list  # chunk starts within the span, and its end
    row_max: torch.Tensor  # (G,): the largest reciprocal of each row


@dataclass(frozen=True)
class _Bounds:
    """The bounds S of a span's blocks, and what they are in units of."""

    scale: torch.Tensor  # (PS) float64: rho_r alpha_c, what S's products are in units of (^p)
    dead: torch.Tensor  # (PS) bool: pairs no row owns (zero weight, other sign) or with scale 0
    keys: torch.Tensor  # (blocks padded to whole runs, GJ): S as comparable keys, -1 past the blocks
    run_max: torch.Tensor  # (runs, GJ): the largest key of each run
    top: torch.Tensor  # (GJ,): each pair's largest key in the span
    smax: torch.Tensor  # (PS) float64: each pair's largest S in the span
    blocks: int  # blocks of the span


class _ScreenedConv:
    """One run of the screened engine over a layer's points (see the module doc)."""

    def __init__(self, pts: _Points, w: torch.Tensor, geo: _Geometry, budget: _Budget, prec: _Precision,
                 out_y: ConvOutput | None):
        self.pts, self.geo, self.budget, self.prec, self.out_y = pts, geo, budget, prec, out_y
        self.device = pts.device
        f_units, self.j_cols = w.shape
        self.g_rows = 2 * f_units
        self.n_pairs = self.g_rows * self.j_cols
        self.ws4 = _signed(w).reshape(-1, geo.channels, geo.kh, geo.kw)  # (G, C, kh, kw)
        self.lay = _Blocks.of(geo)
        self.floor = self.lay.size * prec.tiny
        self.flip = prec.dtype == torch.bfloat16
        self.pshape = (self.j_cols, self.g_rows) if self.flip else (self.g_rows, self.j_cols)
        unused = ~torch.cat([w > 0, w < 0])  # (G, J): entries no row owns (zero weights, the other sign)
        self.unused = unused.T.contiguous() if self.flip else unused  # (PS)
        point = pts.shape[0] * pts.shape[1] * pts.shape[2]
        self.steps = _Steps.plan(pts.count, self.g_rows, self.j_cols, point, self.lay, prec, budget)
        self._allocate()
        self.m = torch.zeros(self.pshape, device=self.device)  # (PS): exact maxima found so far
        self.low = torch.zeros(self.pshape, dtype=torch.float64, device=self.device)  # (PS): L (absolute)
        self.deferred = []  # (span start, span end, pairs (R, 2), bound on the span's products (R,))
        self.inf = torch.full((), math.inf, dtype=torch.float64, device=self.device)

    def _allocate(self) -> None:
        """The buffers of one run, from the budget's workspace (reused across layers)."""
        lay, st, dev, shape = self.lay, self.steps, self.device, self.pts.shape
        dtype, scaling = self.prec.dtype, self.prec.scaling
        g_rows, j_cols, buf = self.g_rows, self.j_cols, self.budget.buffer
        chunk_blocks = lay.count(st.chunk)
        self.scaled = buf("ax", (st.chunk, *shape), scaling, dev)  # (chunk, C, Hp, Wp): y, then y^p
        # (chunk, C, Hp, Wp): y^p rounded to S's dtype, where it is narrower
        self.rounded = buf("ay", (st.chunk, *shape), dtype, dev) if dtype != scaling else None
        self.x_blocks = buf("rx", (chunk_blocks, g_rows, lay.size), dtype, dev)  # (chunk blocks, G, size): x^p
        self.y_unfolded = buf("unf", (lay.rows(st.chunk), j_cols, lay.ppad), dtype, dev)  # (chunk rows, J, ppad): y^p
        # (chunk blocks, J, size): y^p block-major; the same as y_unfolded without sub-blocks or groups
        many = lay.per_point > 1 or lay.group > 1
        self.y_blocks = buf("a_blk", (chunk_blocks, j_cols, lay.size), dtype, dev) if many else self.y_unfolded
        self.a_unfolded = buf("a_nat", (lay.rows(st.exact), j_cols, lay.ppad), device=dev)  # (exact rows, J, ppad): A
        self.scratch = buf("scratch", (st.pieces,), device=dev)  # (pieces,)
        self.span_points = buf("x_span", (st.span, *shape), device=dev)  # (span, C, Hp, Wp): the points
        self.span_recips = buf("r_span", (lay.rows(st.span), g_rows, lay.ppad), device=dev)  # (span rows, G, ppad): R
        padded_blocks = -(-lay.count(st.span) // st.run) * st.run
        self.span_bounds = buf("s_span", (padded_blocks, *self.pshape), dtype, dev)  # (blocks, PS): S

    def run(self) -> torch.Tensor:
        """M (2F, J)."""
        spans = self.steps.spans
        for s0, s1 in zip(spans, spans[1:]):
            self._screen(self._load(s0, s1))
        self._finish_deferred()
        return self.m.T.contiguous() if self.flip else self.m  # (G, J)

    # ----------------------------------------------------------------------- one span

    def _load(self, s0: int, s1: int) -> _Span:
        """The span's points and reciprocals (and the layer's output, on the first load)."""
        lay, p = self.lay, self.geo.patches
        points = self.pts.chunk(s0, s1 - s0, self.span_points)  # (n, C, Hp, Wp)
        recips = self.span_recips[: lay.rows(s1 - s0)]  # (rows, G, ppad)
        chunks = _even_chunks(s1 - s0, self.steps.chunk, lay.group)
        row_max = torch.zeros(self.g_rows, device=self.device)  # (G,)
        for c0, c1 in zip(chunks, chunks[1:]):  # c0: a whole number of groups
            n = c1 - c0
            z = self.geo.z(points[c0:c1], self.ws4)  # (n, G, P)
            if self.out_y is not None:
                self.out_y.add(s0 + c0, z)
            r_chunk = recips[c0 : c0 + lay.rows(n)]  # (rows of the chunk, G, ppad)
            _recip(z, out=r_chunk[:n, :, :p])
            if lay.padded:
                r_chunk[:n, :, p:].zero_()
            r_chunk[n:].zero_()
            torch.maximum(row_max, r_chunk.amax(dim=(0, 2)), out=row_max)
        return _Span(s0, s1, points, recips, chunks, row_max)

    def _screen(self, span: _Span) -> None:
        """Raise m to the exact maxima of the span's products, evaluating only blocks that can."""
        prec = self.prec
        b = self._bounds(span)
        # L in this span's units, float64 (the ratio can be huge or tiny), and the span's own lower bounds
        known = self._attained(b)  # (PS)
        torch.maximum(known, (b.smax * (1 - prec.rel) - self.floor).clamp(min=0) / self.lay.size, out=known)
        thresh = self._threshold(known)  # (PS)
        # each pair's most promising block first, where it can beat L: its max raises L
        want = ((b.smax > 0) & (b.smax >= thresh) & ~b.dead).view(-1)  # (GJ,)
        if bool(want.any()):
            self._evaluate_best_blocks(want, b, span)
            torch.maximum(known, self._attained(b), out=known)
            thresh = self._threshold(known)
        starved = (thresh <= 0) & ~b.dead  # (PS): every product here sits below the float range
        cut = torch.where(starved | b.dead, self.inf, thresh).view(-1)  # (GJ,)
        self._evaluate(_candidates(b.keys, b.run_max, _keys_at_most(cut, prec.dtype), self.steps.run), span)
        torch.maximum(self.low, self.m.double(), out=self.low)  # attained products: the best L
        if bool(starved.any()):
            self._starved(starved, b, span)

    def _bounds(self, span: _Span) -> _Bounds:
        """S of every block of the span, with the scale it is in and each pair's largest S."""
        lay, dtype, run = self.lay, self.prec.dtype, self.steps.run
        # factors x = R * inv_rho and y = A * inv_alpha in [0, 1] (up to rounding); scale holds
        # the exact inverse of the factors used, so real products = x * y * scale
        inv_rho, scale_r = _unit_scale(span.row_max, self.prec.scaling)  # (G,) each
        inv_alpha, scale_c = _unit_scale(span.points.amax(dim=(0, 2, 3)), self.prec.scaling)  # (C,) each
        scale_j = scale_c.repeat_interleave(self.geo.kh * self.geo.kw)  # (J,)
        scale = torch.outer(scale_j, scale_r) if self.flip else torch.outer(scale_r, scale_j)  # (PS)
        dead = self.unused | (scale == 0)  # (PS)
        for c0, c1 in zip(span.chunks, span.chunks[1:]):
            self._chunk_bounds(span, c0, c1, inv_rho, inv_alpha)
        blocks = lay.count(span.end - span.start)
        runs = -(-blocks // run)
        keys = _keys(self.span_bounds[: runs * run]).view(runs * run, self.n_pairs)  # (runs * run, GJ)
        keys[blocks:].fill_(-1)  # below every cut (cut >= 0)
        run_max = keys.view(runs, run, self.n_pairs).amax(dim=1)  # (runs, GJ)
        top = run_max.amax(dim=0)  # (GJ,)
        smax = _key_values(top, dtype).view(self.pshape)  # (PS)
        return _Bounds(scale, dead, keys, run_max, top, smax, blocks)

    def _chunk_bounds(self, span: _Span, c0: int, c1: int, inv_rho: torch.Tensor, inv_alpha: torch.Tensor) -> None:
        """S of the blocks of points c0 .. c1 - 1 of the span, into span_bounds: one batched product."""
        lay, power = self.lay, self.prec.power
        n = c1 - c0
        b0, k = lay.count(c0), lay.count(n)
        r_chunk = span.recips[c0 : c0 + lay.rows(n)]  # (rows, G, ppad)
        x_pow = lay.block_major(r_chunk, self.x_blocks, inv_rho, power, self.scratch)  # (k, G, size)
        y = torch.mul(span.points[c0:c1], inv_alpha[None, :, None, None], out=self.scaled[:n])  # (n, C, Hp, Wp)
        if self.rounded is None:
            y = _pow(y, power)  # (n, C, Hp, Wp): y^p
        else:  # squared in float32, rounded once
            y = self.rounded[:n].copy_(_pow(y, power))  # (n, C, Hp, Wp): y^p
        y_pow = lay.block_major(lay.unfold(y, self.y_unfolded), self.y_blocks)  # (k, J, size)
        if self.flip:
            torch.bmm(y_pow, x_pow.transpose(1, 2), out=self.span_bounds[b0 : b0 + k])  # (k, J, G)
        else:
            torch.bmm(x_pow, y_pow.transpose(1, 2), out=self.span_bounds[b0 : b0 + k])  # (k, G, J)

    def _attained(self, b: _Bounds) -> torch.Tensor:
        """(PS) float64: L, in units of the span's scale, raised to p (0 for dead pairs)."""
        return _pow(self.low / b.scale, self.prec.power).masked_fill_(b.dead, 0.0)

    def _threshold(self, known: torch.Tensor) -> torch.Tensor:
        """(PS): the S below which a block cannot reach the lower bound ``known``."""
        return (known - self.floor) / (1 + self.prec.rel)

    def _evaluate_best_blocks(self, want: torch.Tensor, b: _Bounds, span: _Span) -> None:
        """Evaluate the block of largest S of each pair in ``want`` (GJ,), take it out of the keys
        and of its run's max, and raise L to the products found."""
        gj = self.n_pairs
        col = want.nonzero().squeeze(1)  # (W,) the pairs
        run = _first_argmax(b.run_max, b.top)[col]  # (W,) each pair's best run
        pos = _run_blocks(run, col, gj, self.steps.run)  # (run, W) the blocks of that run
        sub = b.keys.take(pos)  # (run, W)
        best = _first_argmax(sub, b.top[col])  # (W,)
        pilot = pos.gather(0, best[None]).squeeze(0)  # (W,) flat positions: block * GJ + pair
        # done: out of S and of their runs' maxima
        b.keys.view(-1)[pilot] = -1
        b.run_max.view(-1)[run * gj + col] = sub.scatter_(0, best[None], -1).amax(dim=0)
        self._evaluate(pilot, span)
        torch.maximum(self.low, self.m.double(), out=self.low)

    def _starved(self, starved: torch.Tensor, b: _Bounds, span: _Span) -> None:
        """Pairs whose products in the span all sit below the float range of the bounds: exhausted
        now, or deferred to the end where the final L may rule the span out for them."""
        prec, lay, geo = self.prec, self.lay, self.geo
        at = starved.nonzero()  # (R, 2): the pairs, as indices into m
        top_s = b.smax[at[:, 0], at[:, 1]]  # (R,)
        # upper bound of every product of the span for these pairs: (S_max (1 + e) + floor)^(1/p)
        scale = b.scale[at[:, 0], at[:, 1]]  # (R,)
        bound = ((top_s * (1 + prec.rel) + self.floor) ** (1.0 / prec.power)) * scale * (1 + 1e-12)  # (R,)
        few = at.shape[0] * b.blocks * lay.size * 4 <= (span.end - span.start) * self.j_cols * geo.patches
        if span.end == self.pts.count or few:
            # no later span to raise L, or few products: now, while the span is at hand
            self._exhaust(at[bound >= self.m[at[:, 0], at[:, 1]].double()], span)
        else:
            self.deferred.append((span.start, span.end, at, bound))

    def _finish_deferred(self) -> None:
        """Exhaust the deferred pairs of each span, where their bound still reaches the final L."""
        for s0, s1, at, bound in self.deferred:
            keep = bound >= self.m[at[:, 0], at[:, 1]].double()  # (R,)
            if not bool(keep.any()):
                continue
            self._exhaust(at[keep], self._load(s0, s1))

    # ----------------------------------------------------------------------- exact evaluation

    def _row_col(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, j) of flat pair indices."""
        if self.flip:
            return pair % self.g_rows, pair // self.g_rows
        return pair // self.j_cols, pair % self.j_cols

    def _evaluate(self, flat: torch.Tensor, span: _Span) -> None:
        """Exact maxima of the blocks in ``flat`` (block * GJ + pair, blocks of the span):
        inputs gathered straight from the points while few products are needed (a
        quarter of an unfolding's cost), else unfolded a few points at a time."""
        if flat.numel() == 0:
            return
        n = span.points.shape[0]
        block = flat // self.n_pairs  # (T,)
        pair = flat - block * self.n_pairs  # (T,)
        if flat.numel() * self.lay.size * 4 <= n * self.j_cols * self.geo.patches:
            _exact_blocks_take(block, *self._row_col(pair), pair, span.recips, span.points, self.geo, self.lay,
                               self.m, self.budget)
            return
        block, order = block.sort()
        pair = pair[order]
        per = self.lay.count(self.steps.exact)  # blocks per part
        parts = torch.arange(0, self.lay.count(n) + per, per, device=self.device)  # (parts + 1,)
        edges = torch.searchsorted(block, parts).tolist()
        for q, (e0, e1) in enumerate(zip(edges, edges[1:])):
            if e0 == e1:
                continue
            cols, r_part, _ = self._unfolded_part(span, q * self.steps.exact)
            r, j = self._row_col(pair[e0:e1])
            _exact_blocks(block[e0:e1] - q * per, r, j, pair[e0:e1], r_part, cols, self.lay, self.m, self.budget)

    def _exhaust(self, at: torch.Tensor, span: _Span) -> None:
        """Exact maxima of every block of the span for the pairs at (R, 2), indices into m."""
        n = span.points.shape[0]
        blocks = self.lay.count(n)
        if at.shape[0] * blocks * self.lay.size * 4 <= n * self.j_cols * self.geo.patches:  # few products: gathered
            pairs = at[:, 0] * self.pshape[1] + at[:, 1]  # (R,)
            self._evaluate((torch.arange(blocks, device=self.device)[:, None] * self.n_pairs + pairs).view(-1), span)
            return
        for i0 in range(0, n, self.steps.exact):
            cols, r_part, i1 = self._unfolded_part(span, i0)
            blocks = self.lay.count(i1 - i0)
            every = torch.arange(blocks, device=self.device)  # (blocks,)
            per = max(1, self.budget.elems(8) // (self.lay.size * blocks))
            for q0 in range(0, at.shape[0], per):
                part = at[q0 : q0 + per]  # (R', 2)
                pair = (part[:, 0] * self.pshape[1] + part[:, 1]).repeat_interleave(blocks)  # (R' blocks,)
                _exact_blocks(every.repeat(part.shape[0]), *self._row_col(pair), pair, r_part, cols, self.lay,
                              self.m, self.budget)

    def _unfolded_part(self, span: _Span, i0: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Points i0 .. i1 - 1 of the span, at most ``exact`` of them: their inputs unfolded
        (rows, J, ppad), their reciprocals (rows, G, ppad), and i1."""
        i1 = min(span.points.shape[0], i0 + self.steps.exact)
        cols = self.lay.unfold(span.points[i0:i1], self.a_unfolded)  # (rows, J, ppad)
        r_part = span.recips[i0 : i0 + self.lay.rows(i1 - i0)]  # (rows, G, ppad)
        return cols, r_part, i1

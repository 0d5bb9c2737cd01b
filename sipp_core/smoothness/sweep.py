"""The one batched sweep behind ``nonsmoothness()``: instrumentation, chunking, reductions.

What is measured ("sites"), in forward order:
- every ``nn.Linear`` and ``nn.Conv2d`` module (its output; forward hook);
- every ReLU call - ``nn.ReLU`` modules and functional ``F.relu`` / ``torch.relu``
  / ``Tensor.relu`` (and in-place variants) anywhere in a forward - and every
  2-D max pool call (``nn.MaxPool2d``, ``F.max_pool2d``, ``torch.max_pool2d``),
  caught by a thread-local ``TorchFunctionMode``, so functional ReLUs inside
  residual blocks are covered without knowing the block;
- the model's output (logits).
A site's name is its module's qualified name; a functional call inside a
module M is "M:relu" / "M:max_pool2d"; a second call of the same module or
function within one forward gets "#2", "#3", ...

Not measured as their own stages: affine modules (BatchNorm in eval mode,
average pooling, residual additions, Flatten) - they appear inside the input
of the next measured stage; functional ``F.linear`` / ``F.conv2d`` calls; other
nonlinearities (listed by ``unmeasured_modules``).

Products rounded once: float32 matrix products round differently for
different row counts and CPUs (on one AVX-512 Xeon a Linear layer gives other
last bits for 7 rows than for 64: MKL picks another kernel for small batches;
with AVX2 kernels a row's bits even depend on its position in the batch). At
the path resolution used here a kink can be as small as that rounding, so a
peak could appear or vanish with the chunking or the CPU. Every Linear and
Conv2d call of a float32 sweep therefore runs in float64, where each product
of two float32 numbers is exact, and is rounded to float32 once: the
correctly rounded sum, whatever the kernel's order (up to a float64 rounding
that lands within 1e-16 of a float32 rounding boundary).

Chunking: points run in chunks along t for groups of paths; a chunk computes
points [s - 1, e + 1) and owns [s, e), so every step (t_k, t_k+1) - sign
flips, argmax switches, trajectory - is counted exactly once across chunk
borders, and a max-pool's argmax input is read one point either side. These
use all units and are reduced chunk by chunk. Per-unit signals are kept
whole along t (so second differences never meet a border) but only for a
seeded sample of at most ``max_units`` units per site and one group of paths
at a time; the peaks, SMP and propagation rules run on them per group.
"""
from __future__ import annotations

import copy
import functools
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..zoo.models import ModelDataMismatch
from .paths import Paths
from .peaks import no_peaks, signal_peaks
from .rules import linear_coeff, pool_rule, relu_rule

RELU_FUNCS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
POOL_FUNCS = {F.max_pool2d, F.max_pool2d_with_indices, torch.max_pool2d}
PRODUCT_FUNCS = {F.linear, F.conv2d}
_UNMEASURED_TYPES = (
    nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardtanh, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.MaxPool1d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.FractionalMaxPool2d,
)


def unmeasured_modules(model: nn.Module) -> list[tuple[str, str]]:
    """(name, reason) for nonlinear modules the sweep does not hook."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, _UNMEASURED_TYPES):
            out.append((name, f"{type(m).__name__} is not hooked (only ReLU and 2-D max pooling are); "
                              "its effect shows only in later layers and in the logits"))
    return out


def rounded_product(func, args, kwargs):
    """A float32 Linear/Conv2d call computed in float64 and rounded once to float32: the
    result no longer depends on the kernel's summation order (batch size, CPU kind)."""
    x = args[0]
    if x.dtype != torch.float32:
        return func(*args, **kwargs)
    wide = lambda v: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
    return func(*(wide(v) for v in args), **{k: wide(v) for k, v in kwargs.items()}).float()


@dataclass
class Site:
    """One measured stage; accumulators are per path (P,)."""

    name: str
    kind: str  # "linear" | "conv2d" | "relu" | "maxpool2d" | "output"
    block: str  # the Linear/Conv this stage follows ("" before the first one)
    units: int
    index: torch.Tensor  # sampled output units (flattened per point)
    in_units: int
    in_link: str  # "input" (model input), a site name, or "" (own input buffer)
    in_index: torch.Tensor | None
    in_key: str | None  # buffer holding the sampled input signal (None: the model input, S = 0)
    coeff: torch.Tensor | None = None  # linear rule weights for in_index (already scaled to a mean)
    lo: torch.Tensor | None = None  # (units,) running min / max of the input (relu) or output:
    hi: torch.Tensor | None = None  # a unit is live where hi > lo
    acc: dict = field(default_factory=dict)  # name -> (P,) float64 tensor
    structural_live: int | None = None  # Linear/Conv: units with a nonzero incoming weight row

    @property
    def out_key(self) -> str:
        return f"{self.name}|out"

    @property
    def derived(self) -> bool:
        """A ReLU: its sampled output is relu() of its stored sampled input (same units), not stored."""
        return self.kind == "relu"

    @property
    def affine(self) -> bool:
        """A Linear/Conv fed by the model input: affine in t along a straight path, so S = 0 exactly."""
        return self.kind in ("linear", "conv2d") and self.in_link == "input"

    @property
    def live_units(self) -> int:
        if self.structural_live is not None:
            return self.structural_live
        return 0 if self.lo is None else int((self.hi > self.lo).sum())


class Sweeper(TorchFunctionMode):
    """Instruments a private copy of a model and runs the chunked sweep over Paths."""

    def __init__(self, model: nn.Module, paths: Paths, *, dtype, max_units: int, memory_budget: int,
                 seed: int, progress=None, chunk_points: int | None = None,
                 paths_per_group: int | None = None):
        super().__init__()
        try:
            self.model = copy.deepcopy(model)
        except Exception as exc:  # noqa: BLE001 - report what the user can act on
            raise TypeError(f"nonsmoothness() needs a deep-copyable model: {exc}") from exc
        self.model.to(dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        param = next(self.model.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.paths, self.dtype, self.max_units, self.budget = paths, dtype, max_units, memory_budget
        self.progress = progress
        self.fixed = (paths_per_group, chunk_points)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.thread = threading.get_ident()
        self.sites: dict[str, Site] = {}
        self.names = {id(m): (n or "model") for n, m in self.model.named_modules()}
        self.stack: list[nn.Module] = []
        self.calls: dict[str, int] = {}
        self.produced: dict[int, tuple[str, torch.Tensor, int]] = {}
        self.probing = False
        self.active = False
        self.last_block = ""
        self.act_numel = 0
        self.bufs: dict[str, torch.Tensor] = {}

    # ---- instrumentation -------------------------------------------------------------------
    def _push(self, module, args):
        if self.active and threading.get_ident() == self.thread:
            self.stack.append(module)

    def _pop(self, module, args, out):
        if self.active and threading.get_ident() == self.thread and self.stack:
            self.stack.pop()

    def _site_name(self, base: str) -> str:
        n = self.calls.get(base, 0) + 1
        self.calls[base] = n
        return base if n == 1 else f"{base}#{n}"

    def _sample(self, units: int) -> torch.Tensor:
        if units <= self.max_units:
            return torch.arange(units)
        return torch.randperm(units, generator=self.gen)[: self.max_units].sort().values

    def _link(self, x: torch.Tensor) -> str:
        """Which earlier signal x is, by storage identity and version; "" if none."""
        if x is self.x_in or (x.data_ptr() == self.x_in.data_ptr() and x.numel() == self.x_in.numel()
                              and x.is_contiguous() and x._version == self.x_in._version):
            return "input"
        hit = self.produced.get(x.data_ptr())
        if hit and hit[1].numel() == x.numel() and x.is_contiguous() and hit[1].is_contiguous() \
                and x._version == hit[2] and x.dtype == hit[1].dtype:
            return hit[0]
        return ""

    def _new_site(self, name, kind, units, x, *, own_input_for_input: bool):
        if not self.probing:
            raise RuntimeError(f"site {name!r} appeared after the first forward: data-dependent forward()"
                               " is not supported by the nonsmoothness sweep")
        link = self._link(x)
        if link == "input" and own_input_for_input:
            link = ""
        in_units = x[0].numel()
        if link == "input":
            in_index, in_key = None, None
        elif link:
            in_index, in_key = self.sites[link].index, self.sites[link].out_key
        else:
            in_index, in_key = None, f"{name}|in"
        if kind == "relu":  # elementwise: measure the same units on both sides
            index = in_index if in_index is not None else self._sample(units)
            in_index = index
        else:
            index = self._sample(units)
            if in_key is not None and in_index is None:
                in_index = self._sample(in_units)
        site = Site(name, kind, self.last_block, units, index, in_units, link, in_index, in_key)
        self.sites[name] = site
        self.act_numel += units + (in_units if not link else 0)
        return site

    def _register(self, name, out):
        self.produced[out.data_ptr()] = (name, out, out._version)

    # ---- chunk context and per-chunk reductions ----------------------------------------------
    def _flat(self, t):  # (G*L, ...) -> (G, L, U)
        return t.detach().reshape(self.G, self.L, -1)

    def _write(self, key, v, index):  # v: (G, L, U) full; store the sampled units of owned points
        if self.probing:
            return
        vals = v[:, self.own]
        if len(index) != vals.shape[-1]:
            vals = vals[..., index.to(v.device)]  # (G, T, n)
        self._store(key, vals)

    def _store(self, key, vals):  # vals: (G, T, n) owned points of sampled units -> buffer (G, n, N)
        buf = self.bufs.get(key)
        if buf is None:
            buf = self.bufs[key] = torch.empty((self.G, vals.shape[-1], self.paths.points),  # all written
                                               dtype=torch.int32 if key.endswith("|arg") else self.dtype)
        buf[:, :, self.dst] = vals.transpose(1, 2).to(buf.dtype).cpu()

    def _add(self, site, key, per_path):  # per_path: (G,)
        if self.probing:
            return
        acc = site.acc.setdefault(key, torch.zeros(self.paths.count, dtype=torch.float64))
        acc[self.gi] += per_path.to(torch.float64).cpu()

    def _trajectory(self, site, v):
        if self.probing:
            return
        step = (v[:, 1:] - v[:, :-1])[:, self.steps]  # (G, S, U)
        self._add(site, "trajectory", step.norm(dim=-1).to(torch.float64).sum(1))

    def _changes(self, site, changed):  # changed: (G, L-1, U) bool per step and unit
        if self.probing:
            return
        per_step = changed[:, self.steps].sum(-1)  # (G, S)
        self._add(site, "flips", per_step.sum(1))
        self._add(site, "flip_steps", (per_step > 0).sum(1))
        self.any_change |= (per_step > 0).cpu()

    def _live(self, site, v):  # running per-unit min and max: live = the unit varies somewhere
        if self.probing or site.kind not in ("relu", "maxpool2d"):
            return
        lo, hi = v.amin((0, 1)).cpu(), v.amax((0, 1)).cpu()
        if site.lo is None:
            site.lo, site.hi = lo, hi
        else:
            torch.minimum(site.lo, lo, out=site.lo)
            torch.maximum(site.hi, hi, out=site.hi)

    def _ours(self, t) -> bool:
        """Inside our sweep, on this thread, on a (G * L, ...) batch of path points."""
        return (self.active and threading.get_ident() == self.thread and isinstance(t, torch.Tensor)
                and t.ndim >= 1 and t.shape[0] == self.G * self.L)

    def on_layer(self, name, module, args, out):
        if not (args and self._ours(args[0]) and self._ours(out)):
            return
        x = args[0]
        name = self._site_name(name)
        self.last_block = name
        site = self.sites.get(name) or self._new_site(
            name, "linear" if isinstance(module, nn.Linear) else "conv2d", out[0].numel(), x,
            own_input_for_input=False)
        if self.probing:  # structural liveness: output channels with a nonzero weight row
            rows = module.weight.detach().reshape(module.weight.shape[0], -1).ne(0).any(1)
            site.structural_live = int(rows.sum()) * (site.units // rows.numel())
        if self.probing and site.in_index is not None and site.coeff is None:
            site.coeff = linear_coeff(module, x[:1])[site.in_index] * (site.in_units / len(site.in_index))
        v = self._flat(out)
        self._write(site.out_key, v, site.index)
        if site.in_link == "":
            self._write(site.in_key, self._flat(x), site.in_index)
        self._trajectory(site, v)
        self._register(name, out)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not args or not self._ours(args[0]):
            return func(*args, **kwargs)
        if func in RELU_FUNCS:
            return self._relu(func, args, kwargs)
        if func in POOL_FUNCS and args[0].ndim == 4:
            return self._pool(func, args, kwargs)
        if func in PRODUCT_FUNCS:
            return rounded_product(func, args, kwargs)
        return func(*args, **kwargs)

    def _context_name(self, module_type, suffix):
        mod = self.stack[-1] if self.stack else None
        base = self.names.get(id(mod), "model")
        return self._site_name(base if isinstance(mod, module_type) else f"{base}:{suffix}")

    def _relu(self, func, args, kwargs):
        x = args[0]
        name = self._context_name(nn.ReLU, "relu")
        site = self.sites.get(name) or self._new_site(name, "relu", x[0].numel(), x, own_input_for_input=True)
        vx = self._flat(x)
        if site.in_link == "":
            self._write(site.in_key, vx, site.in_index)
        self._live(site, vx)
        active = vx > 0
        self._changes(site, active[:, 1:] != active[:, :-1])
        out = func(*args, **kwargs)  # may overwrite x in place: x is fully used above
        v = self._flat(out)
        if not site.derived:
            self._write(site.out_key, v, site.index)
        self._trajectory(site, v)
        self._register(name, out)
        return out

    def _pool(self, func, args, kwargs):
        x = args[0]
        want_idx = func is F.max_pool2d_with_indices or bool(kwargs.get("return_indices")) or (
            len(args) > 6 and bool(args[6]))
        kw = {k: v for k, v in kwargs.items() if k != "return_indices"}
        out, idx = F.max_pool2d_with_indices(*args[:6], **kw)
        name = self._context_name(nn.MaxPool2d, "max_pool2d")
        site = self.sites.get(name) or self._new_site(name, "maxpool2d", out[0].numel(), x,
                                                      own_input_for_input=True)
        c, hw = x.shape[1], x.shape[2] * x.shape[3]
        gidx = idx + (torch.arange(c, device=idx.device) * hw).reshape(1, c, 1, 1)
        g = self._flat(gidx)  # (G, L, Uo) argmax, flat over the input's C*H*W
        v, vx = self._flat(out), self._flat(x)
        self._changes(site, g[:, 1:] != g[:, :-1])
        self._live(site, v)
        self._trajectory(site, v)
        if site.in_link == "":
            self._write(site.in_key, vx, site.in_index)
        if not self.probing:
            pts = torch.arange(self.own.start, self.own.stop, device=v.device)
            gs = g[:, pts][..., site.index.to(v.device)]  # (G, T, n) argmax of sampled outputs
            # the current argmax input, one point earlier and later: its own kinks and slope
            xm = vx[:, (pts - 1).clamp(min=0)].gather(-1, gs)
            xp = vx[:, (pts + 1).clamp(max=self.L - 1)].gather(-1, gs)
            for key, val in (("xm", xm), ("xp", xp), ("arg", gs)):
                self._store(f"{name}|{key}", val)
        self._write(site.out_key, v, site.index)
        self._register(name, out)
        return (out, idx) if want_idx else out

    # ---- driver ----------------------------------------------------------------------------
    def _install(self):
        hs = []
        for name, m in self.model.named_modules():
            hs.append(m.register_forward_pre_hook(self._push))
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                hs.append(m.register_forward_hook(functools.partial(self.on_layer, name or "model")))
            hs.append(m.register_forward_hook(self._pop, always_call=True))
        return hs

    def _forward(self, gi: torch.Tensor, s: int, e: int):
        n = self.paths.points
        l0, l1 = max(0, s - 1), min(n, e + 1)
        self.gi, self.G, self.L = gi, len(gi), l1 - l0
        self.own, self.dst = slice(s - l0, e - l0), slice(s, e)
        self.steps = slice(s - l0, min(e, n - 1) - l0)
        self.any_change = torch.zeros((self.G, self.steps.stop - self.steps.start), dtype=torch.bool)
        x = self.paths.chunk(gi, l0, l1, self.dtype, self.device)
        self.x_in = x.reshape(self.G * self.L, *self.paths.input_shape)
        self.calls, self.produced, self.stack, self.last_block = {}, {}, [], ""
        with self:  # the TorchFunctionMode only around the forward
            out = self.model(self.x_in)
        if not isinstance(out, torch.Tensor) or out.shape[0] != self.x_in.shape[0]:
            raise TypeError("nonsmoothness() needs a model that returns one (batch, ...) tensor of logits")
        site = self.sites.get("output")
        if site is None:
            site = Site("output", "output", self.last_block, out[0].numel(), torch.arange(out[0].numel()),
                        0, "", None, None)
            self.sites["output"] = site  # measured in full: SMP of the output is a sum over all logits
        v = self._flat(out)
        self._write(site.out_key, v, site.index)
        self._trajectory(site, v)
        if not self.probing:
            self.region[gi] += self.any_change.sum(1)
        self.produced = {}

    def _plan(self) -> tuple[int, int]:
        """Paths per group G and owned points per chunk T within the memory budget."""
        p, n = self.paths.count, self.paths.points
        item = torch.finfo(self.dtype).bits // 8
        stored = 0
        for site in self.sites.values():
            stored += len(site.index) * (4 if site.kind == "maxpool2d" else 0 if site.derived else 1)
            if site.in_link == "" and site.in_index is not None:
                stored += len(site.in_index)
        per_path = max(1, stored * n * item)
        per_point = max(1, (self.act_numel + self.x_in[0].numel()) * item * 4)  # x4: temporaries
        half = self.budget // 2
        g = max(1, min(p, half // per_path))
        pts = max(3, half // per_point)
        t = min(n, max(1, pts // g - 2))
        if t < min(n, 64) and g > 1:
            g = max(1, min(g, pts // (min(n, 64) + 2)))
            t = min(n, max(1, pts // g - 2))
        fixed_g, fixed_t = self.fixed
        return (min(p, fixed_g) if fixed_g else g), (min(n, fixed_t) if fixed_t else t)

    def run(self):
        p, n = self.paths.count, self.paths.points
        self.lengths = self.paths.lengths.clamp_min(torch.finfo(torch.float64).tiny)
        self.region = torch.zeros(p, dtype=torch.long)
        self.timings = {"forward": 0.0, "peaks": 0.0}
        handles = self._install()
        try:
            with torch.no_grad():
                self.active, self.probing = True, True
                try:
                    self._forward(torch.tensor([0]), 0, 2)  # discovers sites, links and samples
                except RuntimeError as exc:
                    raise ModelDataMismatch(f"the model cannot take inputs of shape {self.paths.input_shape} "
                                            f"(from the paths): {exc}",
                                            "choose the data set the model was trained for") from exc
                self.probing = False
                g, t = self._plan()
                self.plan = {"paths_per_group": g, "points_per_chunk": t}
                chunks = [(g0, s) for g0 in range(0, p, g) for s in range(0, n, t)]
                done = 0
                for g0 in range(0, p, g):
                    gi = torch.arange(g0, min(p, g0 + g))
                    self.bufs = {}
                    for s in range(0, n, t):
                        t0 = time.perf_counter()
                        self._forward(gi, s, min(n, s + t))
                        self.timings["forward"] += time.perf_counter() - t0
                        done += 1
                        if self.progress is not None:
                            self.progress(done / (len(chunks) + 1), f"sweep: chunk {done} of {len(chunks)}")
                    t0 = time.perf_counter()
                    self._finalize(gi)
                    self.timings["peaks"] += time.perf_counter() - t0
        finally:
            self.active = False
            for h in handles:
                h.remove()
            self.bufs = {}
        for site in self.sites.values():
            if "trajectory" in site.acc:
                site.acc["trajectory"] = site.acc["trajectory"] / self.lengths
        return self

    # ---- per-group reductions (docs/nonsmoothness.md §2 and 3) --------------------------------
    def _put(self, key, gi, values):
        acc = self.results.setdefault(key, torch.full((self.paths.count,), float("nan"), dtype=torch.float64))
        acc[gi] = values.to(torch.float64)

    def _finalize(self, gi):
        if not hasattr(self, "results"):
            self.results = {}
        hl = (self.paths.step * self.lengths[gi]).reshape(-1, 1)  # (G, 1)
        cache: dict[str, object] = {}
        derived = {s.out_key: s.in_key for s in self.sites.values() if s.derived}
        affine = {s.out_key for s in self.sites.values() if s.affine}

        def peaks(key):
            if key not in cache:
                if key in affine:  # affine in t: no kinks to look for
                    cache[key] = no_peaks(self.bufs[key].shape[:-1], self.paths.points - 2, self.dtype)
                elif key in derived:  # relu(stored input), clamped block by block, never materialised
                    cache[key] = signal_peaks(self.bufs[derived[key]], relu=True)
                else:
                    cache[key] = signal_peaks(self.bufs[key])
            return cache[key]

        def unit_smp(key):  # (G, n) SMP of each sampled unit
            return peaks(key).total().to(torch.float64) / hl

        for site in self.sites.values():
            if site.kind == "output":
                pk = peaks(site.out_key)
                logit = pk.total().to(torch.float64) / hl  # (G, C)
                if not hasattr(self, "logit_smp"):
                    self.logit_smp = torch.zeros((self.paths.count, site.units), dtype=torch.float64)
                    self.logits = torch.zeros((self.paths.count, self.paths.points, site.units))
                    self.output_peaks = [()] * self.paths.count
                self.logit_smp[gi] = logit
                self.logits[gi] = self.bufs[site.out_key].transpose(1, 2).float()
                keep = pk.dense()  # (G, C, N-2)
                for j, i in enumerate(gi.tolist()):
                    self.output_peaks[i] = tuple((keep[j].any(0).nonzero().reshape(-1) + 1).tolist())
                continue
            s_in = torch.zeros(len(gi), dtype=torch.float64)
            pred = torch.zeros(len(gi), dtype=torch.float64)
            self._put(f"{site.name}|smp", gi, unit_smp(site.out_key).mean(-1))
            if site.in_key is not None:
                s_units = unit_smp(site.in_key)
                s_in = s_units.mean(-1)
                if site.kind in ("linear", "conv2d"):
                    pred = (s_units * site.coeff).sum(-1)
                elif site.kind == "relu":
                    pred = relu_rule(self.bufs[site.in_key], peaks(site.in_key), hl)
            if site.kind == "maxpool2d":
                b = {k: self.bufs[f"{site.name}|{k}"] for k in ("xm", "xp", "arg")}
                pred = pool_rule(self.bufs[site.out_key], b["xm"], b["xp"], b["arg"], hl)
            self._put(f"{site.name}|smp_in", gi, s_in)
            self._put(f"{site.name}|smp_pred", gi, pred)

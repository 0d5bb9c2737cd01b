"""explore(): the Prune, Sensitivity and Kept-edges views of the app as one notebook widget.

    ex = explore()                         # lenet300 on mnist5k, keep 10%
    ex = explore("lenet5", keep_ratio=0.05)
    ex = explore(net, data, epsilon=0.5)   # your own nn.Module and DataRecord
    ex.result                              # the current PruneResult, for the next cell

Moving method, keep ratio, eps or delta re-runs plan -> masks -> evaluation from the cached
sensitivities (pipeline.evaluate_prune), as the app does; changing |S| or the seed draws a new S
and recomputes the sensitivities (kept for the last few choices). Each chart lives in its own
ipywidgets.Output, cleared and redrawn in place; ``specs`` holds the Vega-Lite dict last drawn in each.
"""
from __future__ import annotations

import html
import math
import numbers
import time
from contextlib import contextmanager
from types import SimpleNamespace

import torch

try:
    import ipywidgets as w
except ImportError as exc:  # an optional extra: name the fix
    raise ImportError("explore() needs ipywidgets: pip install 'sipp-studio[notebook]' (or pip install ipywidgets)") from exc
from IPython import get_ipython
from IPython.display import display

from sipp_core.errors import BadInput, SippError
from sipp_core.options import METHODS
from sipp_core.pipeline import Report, evaluate_prune
from sipp_core.runtime import torch_threads
from ui import tables
from ui.charts import images as charts_images
from ui.charts import kept_edges as kept_charts
from ui.charts import layers as layer_charts
from ui.charts import sensitivity as sens_charts
from ui.notebook.sources import Sources
from ui.notebook.vega import bundle_of_spec, chart_spec
from ui.settings import DELTA_OPTIONS, EPS_OPTIONS, METHOD_LABELS, MODES, Settings, check_settings, fmt_num

SMALL_LAYER = 4000  # edges; above this a layer is drawn as an image, as on the app's Kept edges page
SETTINGS = ("method", "keep_ratio", "epsilon", "delta", "sample_size", "seed", "layer")
SEED_BOX_MAX = 2**31 - 1  # the seed box's largest value (it would clamp a larger one)
CHARTS = ("density", "bound", "sensitivity", "kept_edges", "kept_per_unit")
TAB_OF = {"density": 0, "bound": 0, "sensitivity": 1, "kept_edges": 2, "kept_per_unit": 2}  # which tab shows it
TABS = ("Prune", "Sensitivity", "Kept edges")
STYLE = {"description_width": "150px"}


@contextmanager
def app_threads():
    """torch's intra-op threads as the app sets them (half the cores, at most 4) for one update, then restored.

    Many small ops on a busy 2-core machine run several times faster on 1 thread than on torch's default 2
    (BENCHMARKS.md, "Threads"); the kernel's own setting is put back for the user's other cells."""
    before, n = torch.get_num_threads(), torch_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def _log_options(values: list[float], extra: float | None) -> list[tuple[str, float]]:
    vals = sorted(set(values) | ({float(extra)} if extra is not None else set()))
    return [(fmt_num(v), v) for v in vals]


def _check_given(settings: dict) -> dict:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise BadInput(f"explore() has no setting {', '.join(map(repr, unknown))}",
                       f"use one of {', '.join(SETTINGS)}")
    if settings.get("keep_ratio") is not None and settings.get("epsilon") is not None:
        raise BadInput("explore() got both keep_ratio and epsilon", "give one: keep_ratio=0.1 or epsilon=0.5")
    if settings.get("method", "sipp-hybrid") not in METHODS:
        raise BadInput(f"explore() does not know the method {settings['method']!r}", f"use one of {', '.join(METHODS)}")
    for key, lo, hi in (("keep_ratio", 0.0, 1.0), ("epsilon", 0.0, math.inf), ("delta", 0.0, 1.0)):
        v = settings.get(key)
        if v is None:
            continue
        if not _real(v):
            raise BadInput(f"{key} = {v!r} is not a number", f"give {key} as a number, e.g. {key}=0.1")
        if not (lo < float(v) <= hi and (key != "delta" or float(v) < 1)) or math.isinf(float(v)):
            span = "a finite number > 0, e.g. epsilon=0.5" if hi == math.inf else (
                f"a number in ({lo:g}, {hi:g}{')' if key == 'delta' else ']'}")
            raise BadInput(f"{key} = {v!r} is out of range", f"choose {key} as {span}")
    # whole numbers only: the boxes would round 1.5 to 1, and a negative seed to 0, without a word
    for key, lo, hi in (("seed", 0, SEED_BOX_MAX), ("sample_size", 1, math.inf)):
        v = settings.get(key)
        if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool) or not lo <= v <= hi):
            span = f"from {lo} to {hi:,}" if hi < math.inf else f"of at least {lo}"
            raise BadInput(f"{key} = {v!r} is not a whole number {span}",
                           f"give {key} as a whole number {span}" + (", or None for the formula"
                                                                     if key == "sample_size" else ""))
    return settings


def _real(v) -> bool:
    """A real number: a Python or numpy one, or a 0-d tensor (not a bool, not text)."""
    if isinstance(v, torch.Tensor):
        return v.ndim == 0 and not v.dtype.is_complex and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _initial(sources: Sources, given: dict) -> dict:
    """The controls' first values: defaults, then a Report's or Prepared's own settings, then `given`."""
    d = Settings()
    out = dict(method=d.method, mode=d.mode, keep_ratio=d.keep_ratio, epsilon=d.epsilon, delta=d.delta,
               sample_size=None, seed=d.seed)
    first = sources.first_key()
    if first is not None:
        out["sample_size"], out["seed"] = first
    if sources.report is not None:
        rs = sources.report.result.settings
        out.update(method=rs["method"], delta=rs["delta"], seed=rs["seed"])
        if rs["epsilon"] is not None:
            out.update(mode=MODES[1], epsilon=rs["epsilon"])
        else:
            out["keep_ratio"] = rs["keep_ratio"]
    out.update({k: v for k, v in given.items() if k != "layer" and v is not None})
    if given.get("epsilon") is not None:
        out["mode"] = MODES[1]
    elif given.get("keep_ratio") is not None:
        out["mode"] = MODES[0]
    if "sample_size" in given and given["sample_size"] is None:
        out["sample_size"] = None
    return out


def _call_args(settings: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in settings.items())


class Explorer:
    """The widget: controls, headline numbers and charts over one network. Display it, or read .result."""

    def __init__(self, model=None, data=None, **settings):
        given = _check_given(settings)
        self.sources = Sources(model, data)
        v = _initial(self.sources, given)
        try:
            with app_threads():
                self.prepared = self.sources.get(v["sample_size"], v["seed"])
        except SippError:
            raise
        except ValueError as exc:  # |S| larger than the S-pool (draw_sample says so), or a network or name it cannot use
            fix = ("choose sample_size between 1 and the S-pool's size, or None for the formula"
                   if "sample_size" in str(exc) or "S-pool" in str(exc) else "")
            raise BadInput(str(exc), fix) from exc
        self.report: Report | None = None
        self._specs: dict[str, dict | None] = dict.fromkeys(CHARTS)  # what each chart shows (None: an image)
        self._builders: dict = {}  # chart name -> a function building its chart or image, until it is needed
        self._objects: dict = {}  # chart name -> what was last built for display (a mimetype bundle or an image)
        self._shown: set[str] = set()  # charts built at least once (the histogram is rebuilt only for a new S)
        self.timings_s: dict[str, float] = {}
        self.error: str | None = None
        self._pending: set[str] = set()  # charts of tabs not open yet: drawn when their tab opens
        self._building = True
        self.controls = self._controls(v, given.get("layer"))
        self.outputs = {name: w.Output().add_class(f"sipp-chart-{name}") for name in CHARTS}
        self.headline = w.HTML().add_class("sipp-headline")
        self.status = w.HTML().add_class("sipp-status")
        self.widget = self._layout().add_class("sipp-explorer")  # classes: handles for the browser test
        self._building = False
        self._observe()
        self.update()
        if self.report is None:  # the settings handed in cannot be used: say so now, not in a blank widget
            problem = self.error or "explore() could not prune with these settings"
            raise BadInput(problem, "" if "Fix: " in problem else "change the settings")

    # ---- the controls ----------------------------------------------------------------------------

    def _controls(self, v: dict, layer: str | None) -> SimpleNamespace:
        layers = tables.layer_names(self.prepared)
        if layer is not None and layer not in layers:
            raise BadInput(f"explore() has no layer {layer!r} in this network", f"choose one of {', '.join(layers)}")
        n_pool = self.sources.pool_size
        size = v["sample_size"]
        return SimpleNamespace(
            method=w.Dropdown(options=[(METHOD_LABELS.get(m, m), m) for m in METHODS], value=v["method"],
                              description="Method", layout=w.Layout(width="430px"), style=STYLE),
            mode=w.ToggleButtons(options=list(MODES), value=v["mode"], description="Budget", style=STYLE),
            keep_ratio=w.FloatSlider(value=float(v["keep_ratio"]), min=min(0.005, float(v["keep_ratio"])), max=1.0, step=0.005, readout_format=".3f",
                                     description="Keep ratio κ", continuous_update=False, layout=w.Layout(width="430px"), style=STYLE),
            epsilon=w.SelectionSlider(options=_log_options(EPS_OPTIONS, v["epsilon"]), value=float(v["epsilon"]),
                                      description="ε (per-row error)", continuous_update=False, layout=w.Layout(width="430px"), style=STYLE),
            delta=w.SelectionSlider(options=_log_options(DELTA_OPTIONS, v["delta"]), value=float(v["delta"]),
                                    description="δ (failure prob.)", continuous_update=False, layout=w.Layout(width="430px"), style=STYLE),
            auto_sample=w.Checkbox(value=size is None, description="|S| from the formula", indent=False),
            sample_size=w.BoundedIntText(value=self.prepared.sample_size, min=1, max=n_pool,
                                         description=f"|S| (1 to {n_pool:,})", disabled=size is None,
                                         layout=w.Layout(width="260px"), style=STYLE),
            seed=w.BoundedIntText(value=int(v["seed"]), min=0, max=SEED_BOX_MAX, description="Seed (S and samples)",
                                  layout=w.Layout(width="260px"), style=STYLE),
            layer=w.Dropdown(options=layers, value=layer or layers[0], description="Layer (kept edges)",
                             layout=w.Layout(width="430px"), style=STYLE),
        )

    def _layout(self) -> w.Widget:
        c, o = self.controls, self.outputs
        self._show_mode()
        left = w.VBox([c.method, c.mode, c.keep_ratio, c.epsilon, c.delta])
        right = w.VBox([w.HBox([c.auto_sample]), c.sample_size, c.seed, c.layer])
        self.tabs = w.Tab(children=[
            w.HBox([o["density"], o["bound"]], layout=w.Layout(flex_flow="row wrap")),
            o["sensitivity"],
            w.VBox([o["kept_edges"], o["kept_per_unit"]]),
        ], titles=TABS, selected_index=0)
        self.tabs.observe(self._tab_opened, names="selected_index")
        return w.VBox([w.HBox([left, right], layout=w.Layout(flex_flow="row wrap")), self.status, self.headline,
                       self.tabs])

    def _observe(self) -> None:
        c = self.controls
        for name in ("method", "mode", "keep_ratio", "epsilon", "delta", "auto_sample", "sample_size", "seed"):
            getattr(c, name).observe(self._changed, names="value")
        c.layer.observe(lambda _: self._draw_layer(), names="value")

    def _changed(self, _change) -> None:
        if self._building:
            return
        self._show_mode()
        self.controls.sample_size.disabled = self.controls.auto_sample.value
        self.update()

    def _show_mode(self) -> None:
        c = self.controls
        eps = c.mode.value == MODES[1]
        c.keep_ratio.layout.display = "none" if eps else None
        c.epsilon.layout.display = None if eps else "none"

    def settings(self) -> Settings:
        """The controls as the app's settings record (its checks name the fix for a bad combination)."""
        c = self.controls
        return Settings(method=c.method.value, mode=c.mode.value, keep_ratio=float(c.keep_ratio.value),
                        epsilon=float(c.epsilon.value), delta=float(c.delta.value), auto_sample=c.auto_sample.value,
                        sample_size=int(c.sample_size.value), seed=int(c.seed.value))

    def set(self, **settings) -> "Explorer":
        """Move several controls at once, then update once: ex.set(method='wt', keep_ratio=0.05)."""
        _check_given(settings)
        c = self.controls
        layer = settings.get("layer")
        if layer is not None and layer not in c.layer.options:
            raise BadInput(f"explore() has no layer {layer!r} in this network", f"choose one of {', '.join(c.layer.options)}")
        size, pool = settings.get("sample_size"), self.sources.pool_size
        if size is not None and not 1 <= int(size) <= pool:  # the box would clamp it silently
            raise BadInput(f"sample_size = {size!r} is outside the S-pool of {pool:,} points",
                           f"choose 1 to {pool:,}, or None for the formula")
        before = self._control_values()
        self._building = True
        try:
            if settings.get("epsilon") is not None:
                c.mode.value = MODES[1]
                c.epsilon.options = _log_options(EPS_OPTIONS, settings["epsilon"])
                c.epsilon.value = float(settings["epsilon"])
            if settings.get("keep_ratio") is not None:
                c.mode.value = MODES[0]
                c.keep_ratio.min = min(c.keep_ratio.min, float(settings["keep_ratio"]))  # the slider would clamp it
                c.keep_ratio.value = float(settings["keep_ratio"])
            if settings.get("delta") is not None:
                c.delta.options = _log_options(DELTA_OPTIONS, settings["delta"])
                c.delta.value = float(settings["delta"])
            if "sample_size" in settings:
                c.auto_sample.value = settings["sample_size"] is None
                if settings["sample_size"] is not None:
                    c.sample_size.value = int(settings["sample_size"])
            for key in ("method", "seed"):
                if settings.get(key) is not None:
                    getattr(c, key).value = settings[key]
        finally:
            self._building = False
        self._show_mode()
        c.sample_size.disabled = c.auto_sample.value
        self.update()
        if self.error is not None:  # a call, not a click: say it, or a script would read the last result as this one's
            self._restore(before)  # and the controls show the setting of that result again: the next call starts there
            problem, _, fix = self.error.partition(" Fix: ")
            raise BadInput(f"ex.set({_call_args(settings)}) did not update: {problem.rstrip('.')}; the explorer still "
                           "shows the last setting that worked", fix)
        if settings.get("layer") is not None:
            c.layer.value = settings["layer"]  # redraws the kept edges through its observer
        return self

    _RESTORED = ("mode", "method", "epsilon", "keep_ratio", "delta", "auto_sample", "sample_size", "seed")

    def _control_values(self) -> dict:
        """What set() may change, as it was: each control's value, and the options and limits it may widen."""
        c = self.controls
        return {"values": {k: getattr(c, k).value for k in self._RESTORED}, "eps_options": c.epsilon.options,
                "delta_options": c.delta.options, "keep_min": c.keep_ratio.min}

    def _restore(self, saved: dict) -> None:
        """Put the controls back as _control_values found them, without computing anything."""
        c = self.controls
        self._building = True
        try:
            c.epsilon.options, c.delta.options = saved["eps_options"], saved["delta_options"]
            c.keep_ratio.min = saved["keep_min"]
            for k, v in saved["values"].items():
                getattr(c, k).value = v
        finally:
            self._building = False
        self._show_mode()
        c.sample_size.disabled = c.auto_sample.value

    # ---- computing and drawing ---------------------------------------------------------------------

    @property
    def result(self):
        """The current PruneResult (a pruned copy; the original network is untouched)."""
        return None if self.report is None else self.report.result

    def update(self) -> None:
        """Prune with the controls' values and redraw; a bad combination is explained above the charts."""
        s = self.settings()
        problems = check_settings(s)
        if problems:
            return self._fail(" ".join(problems))
        if not s.auto_sample and s.sample_size > self.sources.pool_size:
            return self._fail(f"|S| = {s.sample_size:,} is more than the S-pool's {self.sources.pool_size:,} points. "
                              "Fix: lower |S| or tick '|S| from the formula'.")
        t0 = time.perf_counter()
        self.status.value = "<i>Computing…</i>"
        try:
            with app_threads():
                prepared = self.sources.get(None if s.auto_sample else s.sample_size, s.seed)
                report = evaluate_prune(prepared, **s.prune_kwargs())
        except (SippError, ValueError) as exc:
            problem, fix = (exc.problem, exc.fix) if isinstance(exc, SippError) else (str(exc), "")
            return self._fail(problem + (f". Fix: {fix}" if fix else ""))
        t1 = time.perf_counter()
        new_prepared = prepared is not self.prepared or "sensitivity" not in self._shown
        self.prepared, self.report, self.error = prepared, report, None
        if s.auto_sample:  # show the formula's |S| in the box, without counting it as a change
            self._building = True
            self.controls.sample_size.value = prepared.sample_size
            self._building = False
        self._draw_headline()
        self._draw("density", lambda: layer_charts.density_chart(report))
        self._draw("bound", lambda: layer_charts.bound_vs_measured(report))
        if new_prepared:
            self._shown.add("sensitivity")
            self._draw("sensitivity", lambda: sens_charts.sensitivity_histogram(prepared))
        self._draw_layer()
        t2 = time.perf_counter()
        self.timings_s = dict(prune_and_evaluate=t1 - t0, charts=t2 - t1, total=t2 - t0)
        self.status.value = (f"<span style='color:#555'>Updated in {1000 * (t2 - t0):.0f} ms: prune and evaluate "
                             f"{1000 * (t1 - t0):.0f} ms, charts {1000 * (t2 - t1):.0f} ms"
                             f"{' (new S: sensitivities recomputed)' if new_prepared else ''}.</span>")

    def _fail(self, message: str) -> None:
        self.error = message
        self.status.value = (f"<div style='color:#B00020'><b>Not updated:</b> {html.escape(message)}</div>"
                             "<div style='color:#555'>The charts below still show the last setting that worked.</div>")

    @property
    def specs(self) -> dict[str, dict | None]:
        """The Vega-Lite spec each chart shows for the current setting (None where an image is shown)."""
        for name in list(self._builders):
            self._build(name)
        return dict(self._specs)

    def _build(self, name: str):
        """Build a chart (or image) now if it is not built yet; returns what to display."""
        build = self._builders.pop(name, None)
        if build is not None:
            obj = build()
            self._specs[name] = chart_spec(obj) if hasattr(obj, "to_dict") else None
            self._objects[name] = bundle_of_spec(self._specs[name]) if self._specs[name] is not None else obj
        return self._objects[name]

    def _draw(self, name: str, build) -> None:
        """A chart is built and sent when its tab is open (now, or when the tab is opened): a slider move costs
        only what is seen."""
        self._builders[name] = build
        if get_ipython() is not None and TAB_OF[name] == self.tabs.selected_index:
            self._show(name)
        else:
            self._pending.add(name)

    def _show(self, name: str) -> None:
        self._pending.discard(name)
        obj = self._build(name)
        if get_ipython() is None:  # no kernel (a script, a test): nothing would draw it
            return
        out = self.outputs[name]
        with out:
            out.clear_output(wait=True)  # wait: the old chart stays until the new one arrives (no flicker)
            display(obj, raw=isinstance(obj, dict))

    def _tab_opened(self, _change) -> None:
        for name in sorted(n for n in self._pending if TAB_OF[n] == self.tabs.selected_index):
            self._show(name)

    def _draw_layer(self) -> None:
        report, layer = self.report, self.controls.layer.value
        if report is None:
            return
        info = report.prepared.infos[layer]
        if info.out_units * info.fan_in <= SMALL_LAYER:
            self._draw("kept_edges", lambda: kept_charts.heatmap_small(tables.heatmap_frame(report, layer), layer))
        else:
            def image():  # a large layer is drawn as an image, as on the app's Kept edges page
                mask, vals, _ = tables.kept_matrix(report, layer)
                return charts_images.kept_heatmap(mask, vals, f"Kept edges of layer {layer} "
                                                              f"({info.out_units} x {info.fan_in})")
            self._draw("kept_edges", image)
        self._draw("kept_per_unit", lambda: kept_charts.kept_per_unit(report, layer))

    def _draw_headline(self) -> None:
        h = tables.headline(self.report)
        p = self.report.prepared
        bound = f"{h['bound_max']:.3g}" if h["has_bound"] else "none (this method has no bound)"
        cells = [
            ("weights kept", f"{h['kept']:,} of {h['total']:,} ({100 * h['keep_ratio']:.2f}%)"),
            ("test accuracy", f"{100 * h['accuracy_before']:.2f}% → {100 * h['accuracy_after']:.2f}%"),
            ("agreement with the original", f"{100 * h['agreement']:.2f}%"),
            ("largest row bound", bound),
            ("largest measured error (held-out)", f"{h['measured_max_heldout']:.3g}"),
            ("|S|", f"{p.sample_size:,} (formula {p.sample_size_formula:,})"),
        ]
        self.headline.value = (
            f"<div style='font-size:13px'><b>{html.escape(p.trained.name)}</b> on <b>{html.escape(p.record.name)}</b>, "
            f"{html.escape(METHOD_LABELS.get(h['method'], h['method']))}<br>"
            + " &nbsp;·&nbsp; ".join(f"{k}: <b>{v}</b>" for k, v in cells) + "</div>")

    def _ipython_display_(self) -> None:
        display(self.widget)

    def __repr__(self) -> str:
        r = self.result
        state = "no result" if r is None else f"{r.settings['method']}, kept {r.kept:,} of {r.total:,}"
        return f"<Explorer: {self.prepared.trained.name} on {self.prepared.record.name}, {state}>"


def explore(model=None, data=None, **settings) -> Explorer:
    """An interactive pruning explorer; see the module docstring.

    Args:
        model: a zoo name ("lenet300", the default), your own nn.Module (with `data`), or a result of
            sipp_core.prepare / prepare_trained / evaluate_prune.
        data: a data set name for a zoo model ("mnist5k", the default), or a DataRecord for your own network.
        settings: first values of the controls: method, keep_ratio or epsilon, delta, sample_size (None: the
            formula), seed, layer.
    """
    return Explorer(model, data, **settings)


__all__ = ["Explorer", "explore"]

"""explore_smoothness(): the Nonsmoothness page in a notebook: SMP of the original and the pruned network.

    ns = sipp_core.explore_smoothness(keep_ratio=0.05)       # lenet300 on mnist5k, 16 paths x 1024 points
    ns = sipp_core.explore_smoothness(ex)                    # the pruned network an explore() widget shows
    ns.comparison.summary()                                  # the numbers, for the next cell

Measuring runs the batched sweep over both networks (a few seconds on lenet300), so it runs when the
widget is made and again when "Measure" is pressed; choosing a path or a logit only redraws. Both
networks are measured on private copies: the shared ones are never touched.
"""
from __future__ import annotations

import copy
import html
import time
from types import SimpleNamespace

try:
    import ipywidgets as w
except ImportError as exc:  # an optional extra: name the fix
    raise ImportError("explore_smoothness() needs ipywidgets: pip install 'sipp-studio[notebook]' (or pip install ipywidgets)") from exc
from IPython import get_ipython
from IPython.display import display
from torch import nn

from sipp_core.errors import BadInput, SippError
from sipp_core.pipeline import Report, evaluate_prune
from sipp_core.runtime import torch_threads
from sipp_core.smoothness import core as smoothness
from ui.charts import smoothness as cs
from ui.notebook.vega import bundle_of_spec, chart_spec
from ui.notebook.explorer import app_threads
from ui.notebook.sources import Sources

PATH_COUNTS = (4, 8, 16, 32, 64)
POINTS = (256, 512, 1024, 2048, 4096)
KINDS = ("mixed",) + smoothness.PATH_KINDS
CONV_UNITS, DENSE_UNITS = 512, 4096  # per-layer unit sample, as on the app's page
CHARTS = ("propagation", "distribution", "transitions", "trajectory", "logit")
STYLE = {"description_width": "130px"}
PRUNE_SETTINGS = ("method", "keep_ratio", "epsilon", "delta", "seed")


def _report_of(source, data, prune: dict) -> Report:
    if isinstance(source, Report):
        return source
    report = getattr(source, "report", None)  # an explore() widget: the result it shows now
    if isinstance(report, Report):
        return report
    kw = {k: v for k, v in prune.items() if v is not None}
    if "keep_ratio" not in kw and "epsilon" not in kw:
        kw["keep_ratio"] = 0.1
    seed = int(kw.get("seed", 0))
    try:
        with app_threads():
            return evaluate_prune(Sources(source, data).get(None, seed), **kw)
    except SippError:
        raise
    except ValueError as exc:
        raise BadInput(str(exc), f"change the prune settings ({', '.join(PRUNE_SETTINGS)})") from exc


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _choice(value, options, name):
    if value not in options:
        raise BadInput(f"explore_smoothness() got {name} = {value!r}", f"choose one of {', '.join(map(str, options))}")
    return value


class SmoothnessExplorer:
    """Controls for the paths, a Measure button, and the page's charts; ``comparison`` holds the last measure."""

    def __init__(self, source=None, data=None, *, paths: int = 16, points: int = 1024, kind: str = "mixed",
                 path_seed: int = 0, max_units: int | None = None, **prune):
        unknown = sorted(set(prune) - set(PRUNE_SETTINGS))
        if unknown:
            raise BadInput(f"explore_smoothness() has no setting {', '.join(map(repr, unknown))}",
                           f"use paths, points, kind, path_seed, max_units, or a prune setting: {', '.join(PRUNE_SETTINGS)}")
        self.report = _report_of(source, data, prune)
        conv = _has_conv(self.report.prepared.model)
        self.max_units = int(max_units or (CONV_UNITS if conv else DENSE_UNITS))
        self.comparison: smoothness.Comparison | None = None
        self.specs: dict[str, dict | None] = dict.fromkeys(CHARTS)
        self.controls = SimpleNamespace(
            paths=w.SelectionSlider(options=list(PATH_COUNTS), value=_choice(paths, PATH_COUNTS, "paths"),
                                    description="Paths", continuous_update=False, style=STYLE),
            points=w.SelectionSlider(options=list(POINTS), value=_choice(points, POINTS, "points"),
                                     description="Points per path N", continuous_update=False, style=STYLE),
            kind=w.Dropdown(options=list(KINDS), value=_choice(kind, KINDS, "kind"), description="Path kind", style=STYLE),
            path_seed=w.BoundedIntText(value=int(path_seed), min=0, max=2**31 - 1, description="Path seed",
                                       layout=w.Layout(width="230px"), style=STYLE),
            measure=w.Button(description="Measure nonsmoothness", button_style="primary", icon="line-chart",
                             layout=w.Layout(width="230px")),
            path=w.Dropdown(description="Path", style=STYLE, layout=w.Layout(width="520px")),
            logit=w.Dropdown(description="Logit", style=STYLE),
        )
        self.outputs = {name: w.Output() for name in CHARTS + ("summary",)}
        self.status = w.HTML()
        self.widget = self._layout()
        self.controls.measure.on_click(lambda _: self.measure())
        self.controls.path.observe(self._path_changed, names="value")
        self.controls.logit.observe(lambda _: self._draw_logit(), names="value")
        self.measure()
        if self.comparison is None:
            raise BadInput(self._error, "change the path settings")

    def _layout(self) -> w.Widget:
        c, o = self.controls, self.outputs
        r = self.report.result
        head = w.HTML(f"<b>{html.escape(self.report.prepared.trained.name)}</b> on "
                      f"<b>{html.escape(self.report.prepared.record.name)}</b>, pruned with {html.escape(r.settings['method'])} "
                      f"to {100 * r.keep_ratio:.2f}% of its weights; the same paths go through both networks.")
        controls = w.HBox([w.VBox([c.paths, c.points]), w.VBox([c.kind, c.path_seed, c.measure])],
                          layout=w.Layout(flex_flow="row wrap"))
        grid = w.HBox([o["transitions"], o["trajectory"]], layout=w.Layout(flex_flow="row wrap"))
        return w.VBox([head, controls, self.status, o["summary"], o["propagation"], o["distribution"], grid,
                       w.HBox([c.path, c.logit]), o["logit"]])

    def _paths(self):
        c, rec = self.controls, self.report.prepared.record
        return smoothness.make_paths(rec.x_test, rec.y_test, count=int(c.paths.value), points=int(c.points.value),
                                     kind=c.kind.value, seed=int(c.path_seed.value))

    def measure(self) -> None:
        """Run the sweep over both networks with the controls' path settings, then redraw everything."""
        self.status.value = "<i>Measuring both networks…</i>"
        t0 = time.perf_counter()
        try:
            paths = self._paths()
            # the app's thread count (1 on 2 cores): the sweep's many medium ops otherwise wait on each other
            kw = dict(max_units=self.max_units, threads=torch_threads())
            comp = smoothness.Comparison(
                smoothness.nonsmoothness(copy.deepcopy(self.report.prepared.model), paths, **kw),
                smoothness.nonsmoothness(copy.deepcopy(self.report.result.model), paths, **kw))
        except (SippError, ValueError) as exc:
            self._error = str(exc)
            self.status.value = f"<div style='color:#B00020'><b>Not measured:</b> {html.escape(str(exc))}</div>"
            return
        self.comparison = comp
        names = self.report.prepared.record.class_names
        c = self.controls
        c.path.options = [(f"{cs.path_label(paths, i, names)} (SMP {float(comp.original.smp[i]):.3g} → "
                           f"{float(comp.pruned.smp[i]):.3g})", i) for i in range(paths.count)]
        if get_ipython() is not None:
            with self.outputs["summary"]:
                self.outputs["summary"].clear_output(wait=True)
                display(cs.summary_frame(comp))
        self._draw("propagation", cs.propagation_chart(comp))
        self._draw("distribution", cs.path_distribution(comp, "smp", names))
        self._draw("transitions", cs.transitions_chart(comp))
        self._draw("trajectory", cs.trajectory_chart(comp))
        default = next((i for i, k in enumerate(paths.kinds) if k == "different-class"), 0)
        if c.path.value == default:
            self._path_changed(None)
        else:
            c.path.value = default  # its observer picks the logits and draws
        self.status.value = (f"<span style='color:#555'>{paths.count} paths × {paths.points} points, both networks "
                             f"measured in {time.perf_counter() - t0:.1f} s.</span>")

    def _path_changed(self, _change) -> None:
        comp, i = self.comparison, self.controls.path.value
        if comp is None or i is None:
            return
        names = self.report.prepared.record.class_names
        classes = int(comp.original.logits.shape[-1])
        label = int(comp.original.paths.labels_a[i])
        first = label if 0 <= label < classes else int(comp.original.logit_smp[i].argmax())
        options = [(f"{k} (class {names[k]})" if k < len(names) else str(k), k) for k in range(classes)]
        if self.controls.logit.options != tuple(options):
            self.controls.logit.options = options
        if self.controls.logit.value == first:
            self._draw_logit()
        else:
            self.controls.logit.value = first

    def _draw_logit(self) -> None:
        comp, c = self.comparison, self.controls
        if comp is None or c.path.value is None or c.logit.value is None:
            return
        self._draw("logit", cs.logit_chart(comp, int(c.path.value), int(c.logit.value),
                                           self.report.prepared.record.class_names))

    def _draw(self, name: str, chart) -> None:
        spec = chart_spec(chart)
        self.specs[name] = spec
        out = self.outputs[name]
        if get_ipython() is None:  # no kernel (a script, a test): nothing draws it, so keep only the spec
            return
        with out:
            out.clear_output(wait=True)
            display(bundle_of_spec(spec), raw=True)

    @property
    def frame(self):
        """Per layer, both networks (the page's table)."""
        return None if self.comparison is None else cs.layer_frame(self.comparison)

    def _ipython_display_(self) -> None:
        display(self.widget)


def explore_smoothness(source=None, data=None, **options) -> SmoothnessExplorer:
    """Nonsmoothness of the original and the pruned network, as a widget; see the module docstring.

    Args:
        source: an explore() widget or an evaluate_prune report (its pruned network), or what explore()
            takes (a zoo name, your own nn.Module with `data`, a prepared result) to prune here.
        options: paths, points, kind, path_seed, max_units; and, when pruning here, method, keep_ratio
            (default 0.1) or epsilon, delta, seed.
    """
    return SmoothnessExplorer(source, data, **options)

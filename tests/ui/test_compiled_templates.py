"""Chart templates compiled ahead (ui/charts/compiled.py, written by `make run`): the default page draws its charts
from them without importing Altair, draws exactly what the builders draw, and ignores a file that another code
wrote, a broken file or none."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import vl_convert
from pagetest import prepared  # noqa: F401  (a fixture)

from ui import compile_templates
from ui.charts import compiled, figure
from ui.charts import layers as layer_charts
from ui.charts.figure import Figure, Template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """compiled.PATH in a temporary folder, read afresh; the process's templates forgotten before and after."""
    path = tmp_path / "__templates__" / "default.json"
    monkeypatch.setattr(compiled, "PATH", path)
    figure._specs.clear()
    figure._charts.clear()
    compiled.forget()
    yield path
    figure._specs.clear()
    figure._charts.clear()
    compiled.forget()


@pytest.fixture(scope="module")
def report(prepared):
    from sipp_core.pipeline import evaluate_prune

    return evaluate_prune(prepared, method="sipp-hybrid", keep_ratio=0.1)


NEVER = Template("ui.charts.no_such_module", "build")  # a builder that fails if it is ever called


def test_a_compiled_template_is_drawn_as_the_builder_draws_it(store, report):
    built = [layer_charts.density_figure(report), layer_charts.bound_figure(report)]
    specs = {f.key: figure.chart_of(f).to_dict() for f in built}
    assert compiled.write(specs) == 2 and compiled.up_to_date()
    figure._specs.clear()
    figure._charts.clear()
    for f in built:
        fig = Figure(f.key, NEVER, f.data)  # the same key: the template must come from the file
        assert figure.spec_of(fig) == specs[f.key]
        assert vl_convert.vegalite_to_svg(fig.to_dict()) == vl_convert.vegalite_to_svg(
            {**specs[f.key], "datasets": fig.to_dict()["datasets"]})
    assert store.stat().st_mode & 0o777 == 0o644  # readable by whoever runs the app


def test_a_key_not_compiled_is_built(store, report):
    f = layer_charts.density_figure(report)
    compiled.write({("another", 1): {"mark": "point"}})
    assert compiled.spec(f.key) is None
    assert figure.spec_of(f)["usermeta"]["sipp_height"] > 0  # built by its Template


@pytest.mark.parametrize("damage", ["fingerprint", "garbage", "templates", "missing"])
def test_a_file_of_other_code_or_a_broken_one_is_ignored(store, damage):
    key = ("density", ("fc1 · Linear 4→2",), 560)
    compiled.write({key: {"mark": "point"}})
    doc = json.loads(store.read_text())
    if damage == "fingerprint":  # a chart module changed since the file was written
        store.write_text(json.dumps({**doc, "fingerprint": "0" * 64}))
    elif damage == "garbage":
        store.write_bytes(b"\x00\xff{not json")
    elif damage == "templates":
        store.write_text(json.dumps({**doc, "templates": ["a", "list"]}))
    else:
        store.unlink()
    compiled.forget()
    assert compiled.spec(key) is None and not compiled.up_to_date()
    figure._specs.clear()
    with pytest.raises(ModuleNotFoundError):  # so spec_of builds it (here: with a builder that cannot)
        figure.spec_of(Figure(key, NEVER, {}))


def test_the_fingerprint_follows_the_chart_code(store, monkeypatch, tmp_path):
    before = compiled.fingerprint()
    charts = tmp_path / "charts"
    charts.mkdir()
    for p in compiled._CODE[0].glob("*.py"):
        (charts / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(compiled, "_CODE", (charts, compiled._CODE[1]))
    assert compiled.fingerprint() == before
    (charts / "layer_templates.py").write_text((charts / "layer_templates.py").read_text() + "\n# changed\n")
    assert compiled.fingerprint() != before


def test_a_key_json_cannot_hold_is_never_compiled():
    assert compiled.key_text(("row_scatter", float("nan"))) is None
    assert compiled.key_text(("x", object())) is None
    assert compiled.spec(("x", object())) is None


def test_the_build_step_says_why_it_wrote_nothing_and_lets_the_app_start(store, monkeypatch, capsys):
    monkeypatch.setattr(compile_templates, "default_page_specs", lambda: {("k",): {"mark": "point"}})

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compiled, "write", full)
    assert compile_templates.main() == 0
    err = capsys.readouterr().err
    assert "Chart templates not compiled (OSError: [Errno 28] No space left on device)" in err
    assert "the first page builds them" in err and not store.exists()


PROBE = """
import json, sys
from pathlib import Path
from ui.charts import compiled
compiled.PATH = Path(sys.argv[1])
if sys.argv[2] == "compile":
    from ui import compile_templates
    sys.exit(compile_templates.main())
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("studio.py", default_timeout=120).run()
print(json.dumps([len(at.exception), [m.label for m in at.metric], len(at.get("vega_lite_chart")),
                  "altair" in sys.modules]))
"""


def _run(path: Path, what: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIPP_WARMUP": "0", "SIPP_PREFETCH": "0", "SIPP_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", PROBE, str(path), what], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_the_default_page_draws_its_charts_without_altair_once_compiled(tmp_path):
    """`make run`'s step compiles the default page's templates; a fresh process then draws that page, both charts
    included, without importing Altair. Without the file the same page imports it (the builders need it)."""
    path, cache = tmp_path / "t" / "default.json", tmp_path / "cache"
    plain = _run(path, "draw", cache)
    assert plain.returncode == 0, plain.stderr[-2000:]
    errors, metrics, charts, altair = json.loads(plain.stdout.strip().splitlines()[-1])
    assert errors == 0 and "Weights kept" in metrics and charts >= 2 and altair

    made = _run(path, "compile", cache)
    assert made.returncode == 0 and "Compiled 2 chart templates" in made.stdout, made.stderr[-2000:]
    again = _run(path, "compile", cache)
    assert again.returncode == 0 and again.stdout == ""  # up to date: nothing to do

    fast = _run(path, "draw", cache)
    assert fast.returncode == 0, fast.stderr[-2000:]
    errors, metrics, charts_now, altair = json.loads(fast.stdout.strip().splitlines()[-1])
    assert errors == 0 and "Weights kept" in metrics and charts_now == charts and not altair


def test_the_fingerprint_follows_altairs_installed_version(monkeypatch, tmp_path):
    """Altair's __init__ reads its version from its metadata: the metadata folder's name is hashed too."""
    site = tmp_path / "site"
    (site / "altair").mkdir(parents=True)
    (site / "altair" / "__init__.py").write_text('__version__ = version("altair")\n')
    (site / "altair-6.3.0.dist-info").mkdir()
    spec = type("Spec", (), {"origin": str(site / "altair" / "__init__.py")})()
    monkeypatch.setattr(compiled.importlib.util, "find_spec", lambda name: spec)
    before = compiled.fingerprint()
    (site / "altair-6.3.0.dist-info").rename(site / "altair-6.4.0.dist-info")
    assert compiled.fingerprint() != before


def test_a_folder_it_cannot_write_is_said_at_once_without_running_the_page(store, monkeypatch, capsys):
    monkeypatch.setattr(compiled, "writable", lambda: False)
    monkeypatch.setattr(compile_templates, "default_page_specs", lambda: pytest.fail("the page ran"))
    assert compile_templates.main() == 0
    assert "cannot be written); the first page builds them" in capsys.readouterr().err


def test_a_code_change_while_compiling_leaves_the_file_stale_not_wrong(store, monkeypatch):
    """The fingerprint is taken before the page runs: templates made by the old code never carry the new one's."""
    codes = iter(["old code", "new code"])
    monkeypatch.setattr(compiled, "fingerprint", lambda: next(codes))
    monkeypatch.setattr(compile_templates, "default_page_specs", lambda: {("k",): {"mark": "point"}})
    assert compile_templates.main() == 0
    assert json.loads(store.read_text())["fingerprint"] == "old code"

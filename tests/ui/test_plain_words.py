"""Every page in plain words: no reference to documents the user cannot open ("SPEC"), and every layer
named by its module name and shape ("1 · Linear 784→300"), never by a bare "1, 3, 5".

One AppTest on the default settings visits every page of the navigation and reads all it shows:
text, captions, callouts, widget labels and options, hover help, table cells and chart titles.
"""
from __future__ import annotations

import json
import re

import pytest
from pagetest import ROOT, new_app, ok, page_folders, wait  # noqa: F401  (page_folders: this module's own cache)

from ui.nav import PAGES

# a prunable layer ("fc1 · Linear 784→300") or a measured stage of the Nonsmoothness page ("relu1 · ReLU")
# (a measured stage names its output units: the Nonsmoothness engine keeps no weight shapes). The default network
# names its layers, so a label starts with a name, never with a position in an nn.Sequential ("1 · Linear …").
LABEL = re.compile(r"^[A-Za-z_][\w.]* · (Linear \d+→\d+|Conv2d \d+→\d+, \d+x\d+|(Linear|Conv2d), \d+ units|ReLU|MaxPool2d)")
# "layer 3", "layer `3`", "Layer 3:" or "layers 1, 3": a layer called by its bare module name
BARE = re.compile(r"\blayers? `?(\d+|[A-Za-z_]\w*\.\d+)`?(?! ·)(?!\d)"
                  r"|`(\d+|[A-Za-z_]\w*\.\d+)`(?! ·)")  # or a module name alone in code type: "In `1`, of the …"
SPEC = re.compile(r"\bSPEC\b")
CODE_NAME = re.compile(r"[a-z]+(_[a-z0-9]+)+")  # "keep_ratio_requested", "smp_in": a library's field, not a heading


def _texts(at) -> list[str]:
    """Everything a page shows as text, one string per element (chart specs included, their data left out)."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:  # chart specs are JSON inside the proto: undo their \u escapes of · and →
            out.append(str(proto).replace("\\\\u00b7", "·").replace("\\u00b7", "·"))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    for d in at.dataframe:
        df = d.value
        out.append(" ".join(map(str, df.columns)))
        for col in df.columns:
            if df[col].dtype == object:
                out.extend(str(v) for v in df[col].dropna().unique()[:200])
    return out


def _layer_columns(at) -> list[tuple[str, list[str]]]:
    return [(c, [str(v) for v in d.value[c].dropna()]) for d in at.dataframe for c in d.value.columns
            if str(c).lower() == "layer"]


def _layer_choices(at) -> list[tuple[str, list[str]]]:
    out = []
    for w in list(at.selectbox) + list(at.radio):
        if (w.label or "").lower().startswith("layer"):  # "Layer", "Layer of the edge", "Layer to follow"
            out.append((w.label, [str(o) for o in w.options]))
    return out


def problems_on_page(at) -> list[str]:
    found = []
    texts = _texts(at)
    for t in texts:
        for m in SPEC.finditer(t):
            found.append(f"'SPEC' in: …{t[max(0, m.start() - 60): m.end() + 60]}…")
        for m in BARE.finditer(t.replace("\\n", " ")):
            found.append(f"bare layer name {m.group(0)!r} in: …{t[max(0, m.start() - 60): m.end() + 60]}…")
    for col, values in _layer_columns(at):
        found += [f"table column {col!r} holds {v!r}, not a label with the module's shape"
                  for v in values if not LABEL.match(v)]
    for label, options in _layer_choices(at):
        found += [f"{label!r} offers {o!r}, not a label with the module's shape" for o in options if not LABEL.match(o)]
    found += [f"table column {c!r} is headed by a code name, not words" for d in list(at.dataframe) + list(at.table)
              for c in d.value.columns if CODE_NAME.fullmatch(str(c))]
    found += [f"a table with columns {list(d.value.columns)[:4]} would write 'None' in its empty cells"
              for d in at.dataframe if not d.proto.HasField("placeholder") or d.proto.placeholder != ""]
    return found


def test_every_table_goes_through_the_empty_cell_helper():
    """Streamlit's grid writes "None" for a missing value unless told otherwise: ui.show.table tells it."""
    calls = [f"{path.relative_to(ROOT)}:{i}" for folder in ("ui", "pages") for path in (ROOT / folder).rglob("*.py")
             if path.name not in ("show.py", "preload.py")  # preload: a hidden one-cell table, no empty cell
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if ".dataframe(" in line]
    assert not calls, f"call ui.show.table instead of st.dataframe: {calls}"


def test_the_checks_catch_what_they_are_for():
    assert BARE.search("Kept edges of layer 3") and BARE.search("the loosest row: layer `features.3`")
    assert not BARE.search("Kept edges of layer 3 · Linear 300→100") and not BARE.search("a 3-layer network")
    assert BARE.search("In `1`, of the 23,520 edges") and not BARE.search("In `1 · Linear 784→300`, of the")
    assert LABEL.match("conv2 · Conv2d 6→16, 5x5") and not LABEL.match("3")
    assert LABEL.match("relu1 · ReLU") and not LABEL.match("1 · Linear 784→300")
    assert SPEC.search("see SPEC 8.3") and not SPEC.search("spectral")


COMPUTED = ["pages/nonsmoothness.py (measured)", "pages/tradeoffs.py (swept)"]


@pytest.fixture(scope="module")
def visited():
    """{page: problems} for every page of the app on the default settings, and for the two analysis pages
    that compute behind a button once they have (a small nonsmoothness measurement, a 2 x 2 sweep)."""
    at = new_app().run()
    ok(at)
    out = {}
    for p in PAGES:
        at.switch_page(p.path).run()
        ok(at)
        out[p.path] = problems_on_page(at)
    at.switch_page("pages/nonsmoothness.py").run()
    at.select_slider(key="ns_paths").set_value(4)
    at.select_slider(key="ns_points").set_value(256)
    at.button(key="ns_run").click().run()
    ok(at)
    assert len(at.get("vega_lite_chart")) >= 4
    out[COMPUTED[0]] = problems_on_page(at)
    at.switch_page("pages/tradeoffs.py").run()
    at.multiselect(key="to_methods").set_value(["sipp-det", "wt"])
    at.text_input(key="to_ratios").set_value("0.2, 0.05").run()
    run = at.button(key="to_run")
    if not run.disabled:  # else another test of this process ran the same sweep: the page shows it from the cache
        run.click().run()
        ok(at)
        wait(at, "_job_sweep")
    assert len(at.get("vega_lite_chart")) >= 3
    out[COMPUTED[1]] = problems_on_page(at)
    return out


def test_every_page_is_visited(visited):
    assert set(visited) == {p.path for p in PAGES} | set(COMPUTED) and "pages/glossary.py" in visited


@pytest.mark.parametrize("page", [p.path for p in PAGES] + COMPUTED)
def test_page_speaks_plain_words_and_names_layers(visited, page):
    assert not visited[page], "\n".join(visited[page][:10])


def test_no_spec_reference_in_the_source_the_user_reads():
    """The app's own files and docs/ never send a reader to a document that is not in the repository."""
    files = [ROOT / "app.py", ROOT / "studio.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").rglob("*.py")),
             *sorted((ROOT / "docs").glob("*.md"))]
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
            if SPEC.search(line)]
    assert not hits, hits


def test_glossary_defines_every_symbol_the_controls_use():
    from ui import glossary

    names = " ".join(t.name for t in glossary.TERMS)
    for symbol in ("ε", "δ", "|S|", "m ", "pseudo-point", "C′", "T ", "L_l", "η", "κ", "SMP", "keep ratio", "row",
                   "sensitivity"):
        assert symbol.strip() in names, symbol
    assert "Glossary" in glossary.hint("eps") and glossary.term("eps").meaning in glossary.hint("eps")
    json.dumps([t.__dict__ for t in glossary.TERMS])  # plain data, printable in a notebook

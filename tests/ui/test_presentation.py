"""Presentation mode: ?present=1 turns it on (and the sidebar's toggle off again); the page gets larger type
and every chart larger type at full width; without it the charts keep the projector sizes of ui.charts.core."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pagetest import new_app, ok, page_folders  # noqa: F401  (page_folders: this module's own cache)

from ui.charts.core import TITLE_PX
from ui.show import PRESENT_SCALE


def _title_sizes(at) -> list[float]:
    return [json.loads(c.proto.spec)["config"]["title"]["fontSize"] for c in at.get("vega_lite_chart")]


def _css(at) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


def test_a_link_with_present_1_presents_until_the_toggle_turns_it_off():
    at = new_app()
    at.query_params["present"] = "1"
    at.run()
    ok(at)
    assert at.session_state["_present"] is True and at.toggle(key="_present_toggle").value is True
    sizes = _title_sizes(at)
    assert len(sizes) >= 2 and all(s >= round(TITLE_PX * PRESENT_SCALE, 1) for s in sizes), sizes
    assert "font-size: 22px" in _css(at)  # the page's own text
    at.switch_page("pages/guarantees.py").run()  # a page switch keeps it (the URL is kept too)
    ok(at)
    assert at.session_state["_present"] is True and at.query_params["present"] in ("1", ["1"])
    at.toggle(key="_present_toggle").set_value(False).run()
    ok(at)
    assert at.session_state["_present"] is False and "present" not in at.query_params
    assert set(_title_sizes(at)) == {TITLE_PX} and "font-size: 22px" not in _css(at)


def test_without_the_link_charts_keep_the_projector_sizes_and_offer_downloads():
    at = new_app().run()
    ok(at)
    assert "present" not in at.query_params and at.toggle(key="_present_toggle").value is False
    charts = at.get("vega_lite_chart")
    assert set(_title_sizes(at)) == {TITLE_PX}
    pops = [p for p in at.get("popover") if p.proto.popover.label == "Download chart"]
    assert len(pops) == len(charts)  # closed: their buttons are made when one is opened
    for p in pops:
        at.session_state[p.proto.popover.id.split("-", 2)[-1]] = True  # opening them (each reruns the page)
    at.run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("PNG image") == labels.count("SVG (vector, for slides)") == len(charts)


def test_downloaded_files_are_named_after_the_chart_title():
    import altair as alt
    import pandas as pd

    from ui.charts import core
    from ui.show import _stem

    c = core.sized(alt.Chart(pd.DataFrame({"a": [1]})).mark_point().encode(x="a:Q").properties(
        title=core._title("Guaranteed bound vs measured error, per layer")), 100)
    assert isinstance(c.title.text, list) and len(c.title.text) == 2  # wrapped for a half-width column
    assert _stem(c) == "guaranteed-bound-vs-measured-error-per-layer"
    live = c.properties(title=alt.Title(alt.ExprRef(expr="'Weights kept per layer: ' + format(1, '.2f')")))
    assert _stem(live) == "weights-kept-per-layer"  # a title with a live number: its leading words
    from ui.charts.figure import Figure

    # A Figure's title is read from its Vega-Lite dict (show.py never imports Altair): the same names
    assert _stem(Figure(("stem-test", "wrapped"), lambda: c, {})) == "guaranteed-bound-vs-measured-error-per-layer"
    assert _stem(Figure(("stem-test", "live"), lambda: live, {})) == "weights-kept-per-layer"
    assert _stem(Figure(("stem-test", "none"), lambda: alt.Chart(pd.DataFrame({"a": [1]})).mark_point(), {})) == "chart"


def test_a_fresh_servers_first_page_has_its_style_before_the_heavy_imports():
    """A fresh server's first page waits seconds for torch: the page's CSS (the narrower sidebar) and the collapsed
    sidebar of ?present=1 are set before those imports, so a projected page does not change its layout when the
    result arrives. studio.py's imports above that point load no torch, pandas or Altair."""
    root = Path(__file__).resolve().parents[2]
    probe = ("import sys; import ui.nav, ui.preload, ui.style, ui.warmup; "
             "print(sorted(m for m in ('torch', 'pandas', 'altair') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    tree = ast.parse((root / "studio.py").read_text())
    first_heavy = min(n.lineno for n in ast.walk(tree)
                      if isinstance(n, ast.ImportFrom) and n.module in ("ui.sidebar", "ui.show", "ui.runtime"))
    calls = {n.func.id: n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert calls["page_style"].lineno < first_heavy
    sidebar_state = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") ==
                     "set_page_config" and any(k.arg == "initial_sidebar_state" for k in n.keywords)]
    assert sidebar_state and all(n.lineno < first_heavy for n in sidebar_state)


def test_a_full_width_chart_gets_its_title_wrapped_for_the_full_width():
    """Titles wrap to fit a half-width column (Streamlit cuts a line at the chart's width); a chart drawn across the
    whole page gets longer lines instead, and the height the lines no longer take."""
    import altair as alt
    import pandas as pd

    from ui.charts import core

    words = "Bound vs measured per row, layer fc1 · Linear 784→300"
    sub = "dashed: y = x; a point above it broke its bound; rows with bound 0 (kept whole or empty) are not drawn"
    c = core.sized(alt.Chart(pd.DataFrame({"a": [1]})).mark_point().encode(x="a:Q").properties(
        title=core._title(words, sub)), 100, 1)
    spec = c.to_dict()
    before = json.dumps(spec, sort_keys=True)
    assert len(spec["title"]["text"]) == 2 and len(spec["title"]["subtitle"]) == 3
    wide, saved = core.wide_title(spec, spec["usermeta"])
    assert wide["title"]["text"] == [words] and len(wide["title"]["subtitle"]) == 2  # 90 characters a line
    assert all(len(line) <= core.SUBTITLE_CHARS_WIDE for line in wide["title"]["subtitle"])
    assert " ".join(wide["title"]["subtitle"]) == sub
    assert saved == core.TITLE_LINE_PX + core.SUBTITLE_LINE_PX  # a line fewer in each
    assert json.dumps(spec, sort_keys=True) == before  # the cached spec is never changed
    presented, _ = core.wide_title(spec, spec["usermeta"], 1.35)  # larger type: shorter lines
    assert all(len(line) <= core.TITLE_CHARS_WIDE / 1.35 for line in presented["title"]["text"])
    live = {**spec, "title": {**spec["title"], "text": {"expr": "'Weights kept'"}}}
    wide, saved = core.wide_title(live, spec["usermeta"])  # a title computed in the browser keeps its text
    assert wide["title"]["text"] == {"expr": "'Weights kept'"} and len(wide["title"]["subtitle"]) == 2
    assert saved == core.SUBTITLE_LINE_PX
    assert core.wide_title(spec, {}) == (spec, 0)  # not made by _title: left as it is


def _row_scatter(at) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    return next(s for s in specs if " ".join(s["title"]["text"]).startswith("Bound vs measured per row"))


def _legends(spec: dict) -> list[dict]:
    return [layer["encoding"]["color"]["legend"] for layer in spec["layer"] if "color" in layer.get("encoding", {})]


def test_the_per_row_scatter_is_square_on_the_page_and_projected():
    """Its log axes span the same range, so y = x must run at 45°: stretched to the page's width (1216 x 380 px while
    presenting) it was a flat strip, and "above the line" could not be read by eye."""
    from ui.show import PRESENT_SQUARE_PX

    at = new_app().run()
    at.switch_page("pages/guarantees.py").run()
    ok(at)
    row = _row_scatter(at)
    assert row["width"] == row["height"] == 360 and row["autosize"]["type"] == "pad"
    assert [g["orient"] for g in _legends(row)] == ["bottom"]
    titles = {" ".join(t): t for t in (json.loads(c.proto.spec)["title"]["text"] for c in at.get("vega_lite_chart"))
              if isinstance(t, list)}
    assert len(titles["Guaranteed bound vs measured error, per layer"]) == 2  # a half-width column's title
    at.query_params["present"] = "1"
    at.switch_page("pages/guarantees.py").run()
    ok(at)
    row = _row_scatter(at)
    assert row["width"] == row["height"] == PRESENT_SQUARE_PX
    # at the right: below the plot, it took the plot's room
    assert [(g["orient"], "columns" in g) for g in _legends(row)] == [("right", False)]


def test_a_title_never_ends_on_a_line_of_one_word():
    """A wrap that leaves one word alone on the last line is made even instead (as many lines, none wider);
    a last line of several words is left as it is, and a layer label is never split."""
    from ui.charts import core

    sub = "edges with s = 0 (not on a log axis): fc2 · Linear 300→100: 2,000, fc3 · Linear 100→10: 150"
    lines = core._lines(sub, core.SUBTITLE_CHARS_WIDE)
    assert len(lines) == 2 and " " in lines[-1] and " ".join(lines) == sub
    assert all(len(line) <= core.SUBTITLE_CHARS_WIDE for line in lines)
    assert "fc3 · Linear 100→10" in lines[-1]
    assert core._lines("Guaranteed bound vs measured error, per layer", core.TITLE_CHARS) == [
        "Guaranteed bound vs measured error,", "per layer"]
    assert core._lines("one two three four five six seven eight nine ten eleven", 52) == [
        "one two three four five six", "seven eight nine ten eleven"]
    assert core._lines("Weights kept per layer", core.TITLE_CHARS) == ["Weights kept per layer"]
    long = "a " + "x" * 60  # a word longer than a line: split as textwrap splits it, nothing evened out
    assert core._lines(long, 52) == textwrap.wrap(long, 52)


def test_a_projected_layer_table_is_a_static_table_of_the_main_columns_in_larger_type():
    """st.dataframe draws on a canvas in Streamlit's 14 px type whatever the CSS says: while presenting, the Prune
    page's per-layer table is a static table of its main columns, formatted as the full table formats them, that the
    presentation's CSS sets at 20 px; the page says where the other columns are."""
    from ui import tables
    from ui.show import PRESENT_LAYER_COLUMNS

    at = new_app()
    at.query_params["present"] = "1"
    at.run()
    ok(at)
    assert len(at.table) == 1 and not at.dataframe
    shown = at.table[0].value
    assert list(shown.columns) == [tables.LAYER_TABLE_LABELS[c] for c in PRESENT_LAYER_COLUMNS]
    assert list(shown["layer"]) == ["fc1 · Linear 784→300", "fc2 · Linear 300→100", "fc3 · Linear 100→10"]
    assert all(cell.replace(",", "").isdigit() for cell in shown["weights"]) and "235,200" in list(shown["weights"])
    assert all(cell.endswith("%") for cell in shown["kept share"])
    assert any("Presentation mode shows 7 of the table's" in c.value for c in at.caption)
    assert "[data-testid=\"stTable\"] td { font-size: 20px; }" in _css(at)
    at.toggle(key="_present_toggle").set_value(False).run()
    ok(at)
    assert not at.table and len(at.dataframe) == 1  # the full, sortable table again
    full = at.dataframe[0].value
    assert len(full.columns) > len(shown.columns)
    assert list(shown["kept"]) == [f"{v:,}" for v in full["kept"]]
    assert list(shown["max error held-out"]) == [f"{v:.3g}" for v in full["max error held-out"]]


def test_a_small_table_is_static_while_presenting_and_formatted_as_its_grid():
    import pandas as pd
    import streamlit as st

    from ui.show import PRESENT_SCROLL_ROWS, static_table

    num = st.column_config.NumberColumn
    df = pd.DataFrame({"layer": ["fc1", "fc2"], "weights": [235200, 30000], "share": [0.5217, float("nan")],
                       "bound": [24.123, 7.3], "raw": [0.12345678, None]})
    out = static_table(df, {"weights": num(format="localized"), "share": num("kept share", format="percent"),
                            "bound": num(format="%.3g")})
    assert list(out.columns) == ["layer", "weights", "kept share", "bound", "raw"]
    assert list(out["weights"]) == ["235,200", "30,000"] and list(out["kept share"]) == ["52.17%", ""]
    assert list(out["bound"]) == ["24.1", "7.3"] and list(out["raw"]) == ["0.1235", ""]
    assert list(df["weights"]) == [235200, 30000]  # the caller's frame is left as it was
    # the grid writes a percent with up to two decimals and none trailing: 85%, not 85.00% while presenting
    shares = static_table(pd.DataFrame({"s": [0.85, 0.101, 0.10144, 0.0, 1.0]}), {"s": num(format="percent")})
    assert list(shares["s"]) == ["85%", "10.1%", "10.14%", "0%", "100%"]
    ticks = static_table(df.assign(kept=[True, False]), {"kept": st.column_config.CheckboxColumn("kept?")})
    assert list(ticks["kept?"]) == ["✓", ""]  # a checkbox column projected as ticks a class can read
    assert static_table(df, {"layer": st.column_config.ProgressColumn()}) is None  # other kinds stay a grid
    ordered = static_table(df, {"layer": st.column_config.TextColumn("name", width=300), "raw": None,
                                "bound": num("bound", format="%.2f×")}, column_order=("bound", "layer", "raw"))
    assert list(ordered.columns) == ["bound", "name"] and list(ordered["bound"]) == ["24.12×", "7.30×"]
    methods = static_table(pd.DataFrame({"method": ["sipp-hybrid", "wt", "no point within the drop"], "n": [1, 2, 3]}))
    assert list(methods["method"]) == ["sipp-\u2060hybrid", "wt", "no point within the drop"]  # kept on one line
    assert static_table(pd.concat([df] * (PRESENT_SCROLL_ROWS // 2 + 1)), None) is None  # too long for a static table
    assert static_table(df.to_numpy(), None) is None


def test_the_learn_walkthroughs_matrices_are_static_tables_while_presenting():
    """The walkthrough's small matrices (weights, inputs, sensitivities) are what a lecturer projects."""
    at = new_app()
    at.query_params["present"] = "1"
    at.run()
    at.switch_page("pages/learn.py").run()
    ok(at)
    n = len(at.table)
    assert n >= 1 and not at.dataframe
    at.toggle(key="_present_toggle").set_value(False).run()
    ok(at)
    assert not at.table and len(at.dataframe) == n


def test_a_projected_layer_table_of_a_deep_network_scrolls_in_a_box_of_its_own():
    """More layers than fit a screen (a ResNet56 has 56): the main columns as a static table in a box of a fixed
    height that scrolls (its header kept in view by the page's CSS); a table too long even for that stays a grid."""
    from streamlit.testing.v1 import AppTest

    def script():
        import pandas as pd
        import streamlit as st

        from ui import show

        st.session_state["_present"] = True
        for n in (40, show.PRESENT_SCROLL_ROWS + 1):
            show.layer_table(pd.DataFrame({"label": [f"conv{i}" for i in range(n)], "name": "x", "kind": "conv2d",
                                           "kept": 5, "total": 10, "density": 0.5}))

    at = AppTest.from_function(script).run()
    assert not at.exception and len(at.table) == 1 and len(at.dataframe) == 1
    assert list(at.table[0].value.columns) == ["layer", "kept", "weights", "kept share"] and len(at.table[0].value) == 40
    assert list(at.dataframe[0].value.columns) == ["layer", "kept", "weights", "kept share"]
    assert all("shows 4 of the table's 6 columns" in c.value for c in at.caption) and len(at.caption) == 2
    from ui.show import PRESENT_SCROLL_KEY, PRESENT_SCROLL_PX

    box = at.main.children[0]  # the scrolling box: a fixed height, the class the page's CSS keeps the header by
    assert box.type == "flex_container" and box.proto.height_config.pixel_height == PRESENT_SCROLL_PX
    assert PRESENT_SCROLL_KEY in str(box.proto) and box.children[0].type == "table"


def test_text_offsets_grow_with_the_projected_type():
    from ui.show import _scaled

    spec = {"mark": {"type": "text", "fontSize": 13, "dy": -16, "dx": 4, "baseline": "bottom"},
            "datasets": {"d": [{"dy": 1}]}, "config": {"axis": {"labelFontSize": 13, "labelPadding": 2}}}
    out = _scaled(spec, 1.35)
    assert out["mark"] == {"type": "text", "fontSize": 17.6, "dy": -21.6, "dx": 5.4, "baseline": "bottom"}
    assert out["datasets"] == {"d": [{"dy": 1}]} and out["config"]["axis"] == {"labelFontSize": 17.6, "labelPadding": 2}


def test_a_projected_chart_fits_a_720p_window_at_150_percent(monkeypatch):
    """1280x720 at 150% zoom leaves a window 480 px high: while presenting, a chart is drawn at most PRESENT_MAX_PX
    high (its plot shrinks, its type does not), a long y-axis title is set on two lines so the shorter plot holds
    it, and a bottom legend of two columns gets three. A chart with a long legend keeps the height it needs."""
    import altair as alt
    import pandas as pd

    from ui import show
    from ui.charts.core import _title, sized

    drawn = []

    class Page:
        def vega_lite_chart(self, spec, **kw):
            drawn.append((spec, kw["height"]))

        def popover(self, *a, **k):
            return type("Box", (), {"open": False})()

    monkeypatch.setattr(show, "st", Page())
    monkeypatch.setattr(show, "presenting", lambda: True)
    monkeypatch.setattr(show, "downloads", lambda *a, **k: None)
    df = pd.DataFrame({"x": [1, 2, 3], "y": [1.0, 2.0, 3.0], "kind": ["a", "b", "c"]})
    y_title = "largest measured error on held-out points (log)"

    def chart(plot: int, legend_rows: int = 0):
        c = alt.Chart(df).mark_point().encode(
            x="x:Q", y=alt.Y("y:Q", title=y_title),
            color=alt.Color("kind:N", legend=alt.Legend(orient="bottom", columns=2)))
        return sized(c.properties(title=_title("A chart", "its subtitle"), width=600, height=plot), plot,
                     legend_rows=legend_rows)

    show.chart(chart(500))
    spec, height = drawn[-1]
    assert height == show.PRESENT_MAX_PX < int(chart(500).usermeta["sipp_height"] * 1.2)
    assert spec["encoding"]["y"]["title"] == ["largest measured error", "on held-out points (log)"]
    assert spec["encoding"]["color"]["legend"]["columns"] == 3
    show.chart(chart(80))  # small already: its own height
    assert drawn[-1][1] == int(chart(80).usermeta["sipp_height"] * 1.2) < show.PRESENT_MAX_PX
    show.chart(chart(500, legend_rows=6))  # six legend rows: taller than the others, by what they take at least
    six = chart(500, legend_rows=6).usermeta["sipp_height"]
    assert drawn[-1][1] >= show.PRESENT_MAX_PX + 35 * 4
    assert drawn[-1][1] - (six - 500) >= show.PRESENT_MIN_PLOT_PX
    # a long subtitle: the plot keeps PRESENT_MIN_PLOT_PX (Nonsmoothness's stage chart had a plot of height 0)
    long = alt.Chart(df).mark_point().encode(x="x:Q", y="y:Q")
    long = sized(long.properties(title=_title("A chart", [f"line {i}" for i in range(6)]), width=600, height=300),
                 300, 6, legend_rows=2)
    show.chart(long)
    around = long.usermeta["sipp_height"] - 300
    assert drawn[-1][1] == around + show.PRESENT_MIN_PLOT_PX > show.PRESENT_MAX_PX
    # one row per item: PRESENT_ROW_PX a row
    rows = long.properties(usermeta={**long.usermeta, "sipp_rows": 16})
    show.chart(rows)
    assert drawn[-1][1] == around + 16 * show.PRESENT_ROW_PX
    # a y title given as lines has its long lines wrapped (Trade-offs' ran past the plot's top)
    assert show._shorter_lines(["relative logits error ||ŷ − y|| / ||y||", "(log scale)"]) == [
        "relative logits error", "||ŷ − y|| / ||y||", "(log scale)"]
    assert show.two_line("short") == ["short"] and show.two_line("a b c d") == ["a b", "c d"]


def test_a_chart_with_nothing_to_draw_is_a_sentence_of_the_page():
    """Guarantees' failure-rate chart says in a sentence that nothing failed. Drawn as a chart it left an empty band
    (about 100 px, projected) and a "Download chart" button for a sentence."""
    at = new_app().run()
    at.switch_page("pages/guarantees.py").run()
    ok(at)
    texts = [m.value for m in at.markdown]
    said = [t for t in texts if t.startswith("**Failure rate beside δ**")]
    assert said and "failures in" in said[0].replace("\\", ""), texts[:5]
    titles = [json.dumps(json.loads(c.proto.spec)["title"]) for c in at.get("vega_lite_chart")]
    assert not any("Failure rate beside" in t for t in titles)

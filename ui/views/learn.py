"""Page 5, Learn: SiPP on a tiny network, one click per step, every number visible."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from sipp_core.zoo.layers import layer_label
from ui import formulas as fx
from ui import learn_core as lc
from ui import lessons, show
from ui.charts import learn as learn_charts
from ui.charts import sensitivity as sens_charts
from ui.links import link_number, link_shown
from ui.settings import DELTA_OPTIONS, fmt_num
from ui.sidebar import page_link_problems

STEPS = lc.STEPS


@st.cache_resource(show_spinner=False, max_entries=8)
def _toy(dataset: str, hidden: int, seed: int) -> lc.Toy:
    return lc.train_toy(dataset, hidden, seed)


@st.cache_resource(show_spinner=False, max_entries=32)
def _walk(dataset: str, hidden: int, seed: int, layer: str, s_size: int) -> lc.Walk:
    return lc.walk_layer(_toy(dataset, hidden, seed), layer, s_size, seed)


@st.cache_resource(show_spinner=False, max_entries=32)
def _methods(dataset: str, hidden: int, seed: int, s_size: int, keep: float, delta: float) -> dict:
    toy = _toy(dataset, hidden, seed)
    w = _walk(dataset, hidden, seed, toy.layer_names[-1], s_size)
    return lc.method_results(toy, w.s_index, keep, delta, seed)


def _matrix(a: np.ndarray, rows: str, cols: str, digits: int = 4) -> pd.DataFrame:
    df = pd.DataFrame(np.round(a, digits))
    df.index = [f"{rows} {i}" for i in range(a.shape[0])]
    df.columns = [f"{cols} {j}" for j in range(a.shape[1])]
    return df


def _controls():
    page_link_problems("learn", {"learn_data": link_shown(lc.TOY_DATASETS), "learn_hidden": link_number(2, 8, True),
                                 "learn_s": link_number(2, 30, True), "learn_seed": link_number(0, 999, True)})
    c1, c2, c3, c4 = st.columns(4)
    # The options are the names a link carries (?learn_data=spirals): a bound selectbox reads the URL as its
    # shown text, so with the descriptions in that text a hand-written link was ignored. They are in the help.
    dataset = c1.selectbox("Toy data", list(lc.TOY_DATASETS), key="learn_data", bind="query-params",
                           help="; ".join(f"**{k}**: {v}" for k, v in lc.TOY_DATASETS.items()))
    hidden = c2.number_input("Hidden units", 2, 8, 4, key="learn_hidden", bind="query-params")
    s_size = c3.number_input("|S| (small, to see every number)", 2, 30, 8, key="learn_s", bind="query-params")
    seed = c4.number_input("Seed", 0, 999, 0, key="learn_seed", bind="query-params")
    return dataset, int(hidden), int(s_size), int(seed)


def _step_network(toy, w, layer: str) -> None:
    weights = [toy.model.get_submodule(n).weight.detach().numpy() for n in toy.layer_names]
    # One above the other, across the page: side by side, the diagram would not fit its column and the browser
    # would stack them anyway, with titles wrapped for half the width
    show.chart(learn_charts.network_diagram(weights, layer_titles=["input x", "hidden (ReLU)", "logits"]))
    pool = toy.record.x_pool.numpy()
    k = int(st.session_state.get("learn_point", 0) or 0)
    followed = int(w.pseudo_of[k]) if 0 <= k < len(w.pseudo_of) else 0  # steps 3 and 4 follow this point of S
    show.chart(learn_charts.toy_data(pool, toy.record.y_pool.numpy(), w.s_index, chosen=followed))
    st.caption(f"The red-orange diamond is point {followed} of S, the one steps 3 and 4 follow (pick another there).")
    st.markdown(f"Weights W of layer `{layer_label(layer, 'linear', w.W.shape)}`"
                f" (rows: output units f, columns: inputs j). A **row** is the "
                "positive (or the negative) weights of one unit.")
    show.table(_matrix(w.W, "unit", "input"))


def _step_activations(w, layer: str) -> None:
    st.markdown(f"The input a(x) of layer `{layer_label(layer, 'linear', w.W.shape)}`"
                f" for each of the {len(w.a)} points of S.")
    show.table(_matrix(w.a, "point", "a_j, j ="))
    if w.signed:
        st.markdown("It has **negative entries**, so each point becomes two non-negative pseudo-points "
                    "a⁺ = max(a, 0) and a⁻ = max(−a, 0) (docs/sipp.md §2.1); the sums below run over those.")
        df = _matrix(w.a_pseudo, "pseudo", "j =")
        df.index = [f"{k} of point {p}" for k, p in zip(w.pseudo_kind, w.pseudo_of)]
        show.table(df)
    else:
        st.markdown("All entries are ≥ 0 (they come out of a ReLU), so they are used as they are.")


def _pick_point(w) -> int:
    """Steps 3 and 4 follow one (pseudo-)point of S."""
    return st.select_slider("Pseudo-point" if w.signed else "Point of S", list(range(len(w.a_pseudo))),
                            format_func=lambda k: f"{w.pseudo_kind[k]} of point {w.pseudo_of[k]}", key="learn_point")


def _step_z(w, n: int) -> None:
    F, J = w.W.shape
    st.latex(fx.TEX_Z)
    f = st.columns([1, 3])[0].number_input("Unit f", 0, F - 1, 0, key="learn_unit")
    pos = [(j, w.W[f, j], w.a_pseudo[n, j]) for j in range(J) if w.W[f, j] > 0]
    neg = [(j, w.W[f, j], w.a_pseudo[n, j]) for j in range(J) if w.W[f, j] < 0]
    for sig, terms, z in (("+", pos, w.z_pos[n, f]), ("-", neg, w.z_neg[n, f])):
        body = " + ".join(rf"{abs(wv):.3f} \cdot {av:.3f}" for _, wv, av in terms) or "0"
        st.latex(rf"z^{{{sig}}}_{{{f}}} = {body} = {z:.4f}")
    show.table(pd.DataFrame({"z⁺": w.z_pos[n], "z⁻": w.z_neg[n]}, index=[f"unit {f}" for f in range(F)]).round(4))
    st.caption("The pre-activation (without bias) is z = z⁺ − z⁻; bounds are relative to z⁺ and z⁻ "
               "separately, so their sum z⁺ + z⁻, not |z|, is the yardstick.")


def _step_g(w, n: int) -> None:
    st.latex(fx.TEX_G)
    show.table(_matrix(w.g[n], "unit", "input"))
    f, j = np.unravel_index(int(np.argmax(w.g[n])), w.g[n].shape)
    z = w.z_pos[n, f] if w.W[f, j] > 0 else w.z_neg[n, f]
    sig = "+" if w.W[f, j] > 0 else "-"
    st.latex(rf"g_{{{f}{j}}} = \frac{{|{w.W[f, j]:.3f}| \cdot {w.a_pseudo[n, j]:.3f}}}{{z^{{{sig}}}_{{{f}}} = {z:.3f}}}"
             rf" = {w.g[n, f, j]:.4f}")
    st.caption("For each unit and sign the g of a row sum to 1 (when the row has signal): g is the share of "
               "the row's signal that edge carried on this point.")


def _step_s(w) -> None:
    F, J = w.W.shape
    st.latex(fx.TEX_S["max"])
    show.table(_matrix(w.s, "unit", "input"))
    agree = np.allclose(w.s, w.s_engine, rtol=1e-4, atol=1e-6)
    st.markdown(f"Recomputed by the loops above, compared with what SiPP Studio's pruning engine computed for the "
                f"same S: "
                f"**{'they agree' if agree else 'they differ'}** (largest difference "
                f"{np.abs(w.s - w.s_engine).max():.2e}).")
    arg = pd.DataFrame([[f"{w.pseudo_kind[k]} of point {w.pseudo_of[k]}" for k in row] for row in w.s_arg],
                       index=[f"unit {f}" for f in range(F)], columns=[f"input {j}" for j in range(J)])
    st.markdown("Which point gives each maximum:")
    show.table(arg)
    f, j = np.unravel_index(int(np.argmax(w.s)), w.s.shape)
    show.chart(sens_charts.edge_profile(w.g[:, f, j], len(w.a), int(w.s_arg[f, j])))
    st.caption(f"The chart follows edge (unit {f}, input {j}), the layer's most sensitive one.")


def _step_bounds(w) -> None:
    J = w.W.shape[1]
    c1, c2, c3 = st.columns(3)
    m = c1.number_input("Budget m per row (weights kept)", 0, J, 1, key="learn_m")
    delta = c2.select_slider("δ", DELTA_OPTIONS, value=1e-2, format_func=fmt_num, key="learn_delta")
    cp = c3.number_input("C′", 1.0, 10.0, 3.0, 0.5, key="learn_cp")
    rows = lc.row_table(w, int(m), float(delta), float(cp))
    L = rows[0]["L"]
    st.latex(fx.TEX_LOG_TERM)
    st.latex(fx.tex_log_term_live(1, 1, float(delta)) + r"\quad(\text{Linear: } P_l = k_l = 1)")
    st.latex(fx.TEX_EPS_RAND)
    st.latex(fx.TEX_EPS_DET)
    r = max(rows, key=lambda x: x["T"])
    st.markdown(f"Row unit {r['unit']}, sign {r['sign']} (the largest T = {r['T']:.4f}):")
    if r["T"] > 0 and r["m"] < r["nnz"]:
        st.latex(fx.tex_eps_rand_live(r["m"], r["T"], L))
        st.latex(fx.tex_eps_det_live(w.s[r["unit"]][(w.W[r["unit"]] > 0) if r["sign"] == "+" else (w.W[r["unit"]] < 0)],
                                     r["m"], float(cp)))
    table = pd.DataFrame(rows).drop(columns=["L"]).rename(columns={
        "weights": "weights of this sign", "nnz": "with s > 0", "eps_det": "ε_det(m)", "c_eps_det": "C′·ε_det(m)",
        "eps_rand": "ε_rand(m)", "hybrid": "hybrid picks"})
    show.table(table.round(4), hide_index=True)
    st.caption("Hybrid samples a row where C′·ε_det(m) > ε_rand(m), else keeps its top-m. "
               "A deterministic bound ≥ 1 says nothing: without reweighting the error is at most 1 anyway.")


def _pruned_by_each_method(dataset: str, hidden: int, seed: int, s_size: int) -> tuple[dict, float]:
    """Steps 7 and 8: the keep ratio and δ, and every method's prune of the tiny network with them."""
    c1, c2 = st.columns(2)
    keep = c1.slider("Keep ratio κ (whole network)", 0.1, 1.0, 0.5, 0.05, key="learn_keep")
    delta = c2.select_slider("δ ", DELTA_OPTIONS, value=1e-2, format_func=fmt_num, key="learn_delta2")
    with st.spinner("Pruning with each method…"):
        res = _methods(dataset, hidden, seed, s_size, float(keep), float(delta))
    return res, float(delta)


def _step_masks(toy, res: dict, layer: str) -> None:
    method = st.radio("Method", list(res), horizontal=True, key="learn_method")
    r = res[method]["result"]
    label = layer_label(layer, "linear", tuple(toy.model.get_submodule(layer).weight.shape))
    weights = [toy.model.get_submodule(n).weight.detach().numpy() for n in toy.layer_names]
    masks = [r.masks[n].numpy() for n in toy.layer_names]
    show.chart(learn_charts.network_diagram(weights, masks, layer_titles=["input x", "hidden (ReLU)", "logits"]))
    kept = pd.DataFrame({m: [mask_text(res[m]["result"].masks[layer].int().numpy())] for m in res},
                        index=[f"mask of layer {label} (1 kept, 0 pruned)"]).T
    show.table(kept)
    vals = res[method]["result"].plans[layer].values.numpy()
    st.markdown(f"Values after pruning, layer `{label}` ({method}; sampled weights are reweighted):")
    show.table(_matrix(vals, "unit", "input"))


def mask_text(mask: np.ndarray) -> str:
    """A layer's 0/1 mask, unit by unit ("unit 0: 0 0 1 1 · unit 1: 1 0 0 0"), not numpy's bracketed print."""
    return " · ".join(f"unit {f}: " + " ".join(str(int(v)) for v in row) for f, row in enumerate(mask))


def _step_errors(toy, res: dict, layer: str, delta: float) -> None:
    recs = []
    for m, d in res.items():
        plan = d["result"].plans[layer]
        recs.append(dict(method=m, kept=d["result"].kept, of=d["result"].total,
                         largest_bound=plan.bound_max, measured_on_S=d["errors_s"][layer].max,
                         measured_held_out=d["errors_heldout"][layer].max,
                         failure_rate_held_out=d["errors_heldout"][layer].failure_rate,
                         accuracy_after=d["end_to_end"].accuracy_after))
    table = pd.DataFrame(recs)
    for col in ("largest_bound", "failure_rate_held_out"):  # baselines have none: an empty cell, not "None"
        table[col] = [("" if v != v else f"{v:.4g}") for v in table[col]]
    table["accuracy_after"] = [f"{100 * v:.1f}%" for v in table["accuracy_after"]]  # as the caption's "before"
    table = table.rename(columns={
        "kept": "weights kept", "of": "of", "largest_bound": "largest bound", "measured_on_S": "max error on S",
        "measured_held_out": "max error held-out", "failure_rate_held_out": "failure rate held-out",
        "accuracy_after": "accuracy after"})
    show.table(table.round(4), hide_index=True)
    st.caption(f"Layer `{layer}`, errors relative to each row's signal z^σ, measured on S and on 300 held-out "
               f"points; accuracy on all {len(toy.record.y_test)} test points (before: {100 * toy.accuracy:.1f}%). "
               "Baselines have no bound, so no failure rate (empty cells).")
    over = [r["method"] for r in recs if r["failure_rate_held_out"] == r["failure_rate_held_out"]
            and r["failure_rate_held_out"] > float(delta)]
    if over:
        st.warning(f"{', '.join(over)}: the measured error broke the row bound on more held-out pairs than "
                   f"δ = {fmt_num(float(delta))} allows. Deterministic rows are guaranteed only on the points of "
                   "S; on new points their bound is the empirical analogue (docs/sipp.md §3). With a tiny S that shows.",
                   icon=":material/warning:")


@st.fragment
def _walkthrough() -> None:
    dataset, hidden, s_size, seed = _controls()
    with st.spinner("Training the tiny network (about a second)…"):
        toy = _toy(dataset, hidden, seed)
    sizes = [toy.record.input_shape[0], hidden, toy.record.num_classes]
    labels = {n: layer_label(n, "linear", tuple(toy.model.get_submodule(n).weight.shape)) for n in toy.layer_names}
    st.caption(f"A {'-'.join(map(str, sizes))} ReLU network trained on {dataset}: test accuracy "
               f"{100 * toy.accuracy:.1f}%. Layers: " + ", ".join(f"`{labels[n]}`" for n in toy.layer_names))
    def shown(n):
        return f"{labels[n]} " + ("(input → hidden)" if n == toy.layer_names[0] else "(hidden → output)")

    page_link_problems("learn-walk", {"learn_layer": link_shown(toy.layer_names, shown),
                                      "learn_step": link_shown(STEPS)})
    layer = st.radio("Layer to follow", toy.layer_names, index=len(toy.layer_names) - 1, key="learn_layer",
                     horizontal=True, bind="query-params", format_func=shown)
    step = st.segmented_control("Step", STEPS, default=STEPS[0], key="learn_step", width="stretch",
                                bind="query-params")
    step = step or STEPS[0]
    w = _walk(dataset, hidden, seed, layer, s_size)
    i = STEPS.index(step)

    if i == 0:
        _step_network(toy, w, layer)
    elif i == 1:
        _step_activations(w, layer)
    elif i == 2:
        _step_z(w, _pick_point(w))
    elif i == 3:
        _step_g(w, _pick_point(w))
    elif i == 4:
        _step_s(w)
    elif i == 5:
        _step_bounds(w)
    else:
        res, delta = _pruned_by_each_method(dataset, hidden, seed, s_size)
        if i == 6:
            _step_masks(toy, res, layer)
        else:
            _step_errors(toy, res, layer, delta)
    nxt = STEPS[(i + 1) % len(STEPS)]
    st.button(f"Next: {nxt} →", key="learn_next", on_click=_go, args=(nxt,))


def _go(step: str) -> None:
    st.session_state["learn_step"] = step


def _lesson_links() -> None:
    st.markdown("**Lessons**, each a link that opens a page with its settings in place, the controls it does not "
                "need hidden, and a short text on what to try (copy one into slides or a course page):")
    for name, url in lessons.lesson_urls().items():
        lesson = lessons.LESSONS[name]
        whole = lessons.absolute(url, st.context.url, "learn")  # the app's own address: a link to paste anywhere
        st.markdown(f"- [{lesson.title}]({url}) (opens {lesson.page_title}): `{whole}`")
    st.caption("Any link may also hide controls of your choice: add hide=key1,key2 (the names in the link, or "
               "sidebar for the whole sidebar). Below: SiPP on a tiny network, step by step.")


def render() -> None:
    st.title("Learn")
    lessons.apply("Learn")
    st.markdown("SiPP on a network small enough to see every number. Each step is one click; the sidebar's "
                "settings drive the other pages, not this one.")
    _lesson_links()
    _walkthrough()

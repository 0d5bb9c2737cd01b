"""The one shared sidebar: every setting, bound to the URL so a copied link reproduces the view.

Each widget's key is its query parameter (``?model=lenet300&method=sipp-det&keep=0.05``).
Values are persisted for the whole session, so switching pages keeps them.
"""
from __future__ import annotations

import math

import streamlit as st
from streamlit.runtime.state import get_session_state

from sipp_core.io.data import DATASETS
from sipp_core.options import ALLOCATIONS, DEVICES, METHODS, PATCH_REDUCTIONS
from sipp_core.zoo.models import MODELS
from ui import engine, style
from ui.glossary import hint
from ui.links import sidebar_url_spec, unused_link_values, url_problems
from ui.settings import (
    ALLOCATION_LABELS,
    DELTA_OPTIONS,
    EPS_OPTIONS,
    KEEP_MAX,
    KEEP_MIN,
    KEEP_STEP,
    METHOD_LABELS,
    MODES,
    PATCH_LABELS,
    Settings,
    fmt_num,
)

BIND = dict(bind="query-params", persist_state="session")
DEFAULTS = Settings()


def _methods() -> list[str]:
    return list(METHODS)


def _models() -> tuple[list[str], dict]:
    return list(MODELS), {k: v.description for k, v in MODELS.items()}


def _datasets() -> tuple[list[str], dict]:
    return list(DATASETS), dict(DATASETS)


def drop_infinite_whole_numbers(spec: dict) -> None:
    """Take a link's inf (or 1e999) for a whole-number box out of the URL before the box reads it: Streamlit's
    seeding converts it to an integer and stops the page with OverflowError (1.67). The check names the value.
    Streamlit keeps the link's first values in a field of its own (_initial_query_params), with no public way to
    edit it; where that field is gone, nothing is done."""
    bad = []
    for key, rule in spec.items():
        if rule[0] == "int" and key in st.query_params:
            try:
                if math.isinf(float(st.query_params[key])):
                    bad.append(key)
            except ValueError:
                continue
    if not bad:
        return
    try:
        with get_session_state().query_params() as qp:
            for key in bad:
                qp._initial_query_params.pop(key, None)
        for key in bad:
            del st.query_params[key]
    except (AttributeError, KeyError, TypeError, st.errors.StreamlitAPIException):
        pass


def warn_about_link(spec: dict) -> None:
    """Once per session, before the widgets read the URL: name every link value they would reset."""
    if st.session_state.get("_link_checked"):
        return
    st.session_state["_link_checked"] = True
    unused = unused_link_values(st.query_params, spec)  # named once, as unused: their controls are not drawn
    drawn = {k: rule for k, rule in spec.items() if k not in unused}
    st.session_state["_link_problems"] = url_problems(st.query_params, drawn) + list(unused.values())
    drop_infinite_whole_numbers(spec)


def page_link_problems(page: str, spec: dict) -> None:
    """A page's own linked controls: on the session's first visit of the page, before its widgets read
    the URL, name every value they would reset (the sidebar's are named by show_link_problems)."""
    seen = f"_link_checked_{page}"
    if st.session_state.get(seen):
        return
    st.session_state[seen] = True
    for text in url_problems(st.query_params, spec, where="the page"):
        st.warning(text, icon=":material/link_off:")
    drop_infinite_whole_numbers(spec)


def show_link_problems(settings: Settings) -> None:
    """The link's rejected values, on the page the link opened, until the user changes a setting."""
    first = st.session_state.setdefault("_link_settings", settings)
    if settings != first:
        st.session_state["_link_problems"] = []
    for text in st.session_state.get("_link_problems", []):
        st.warning(text, icon=":material/link_off:")


def render_sidebar() -> Settings:
    """Draw the settings widgets and return the current Settings (also kept in session_state)."""
    models, model_desc = _models()
    datasets, data_desc = _datasets()
    methods = _methods()
    warn_about_link(sidebar_url_spec(models, datasets, methods))
    sb = st.sidebar
    with sb:
        st.page_link("pages/glossary.py", label="Symbol glossary", icon=":material/menu_book:")
        st.toggle("Presentation mode", value=style.presenting(), key="_present_toggle",
                  on_change=lambda: style.set_presenting(st.session_state["_present_toggle"]),
                  help="For a projector: larger type, charts at full width, the sidebar collapsed when the page "
                       "opens. A link with ?present=1 opens the app this way.")
        st.markdown("### Network")
        model = st.selectbox("Model", models, index=models.index(DEFAULTS.model), key="model",
                             help="Zoo networks: " + "; ".join(f"**{k}**: {v}" for k, v in model_desc.items()), **BIND)
        dataset = st.selectbox("Data set", datasets, index=datasets.index(DEFAULTS.dataset), key="data",
                               help="; ".join(f"**{k}**: {v}" for k, v in data_desc.items()), **BIND)
        st.markdown("### Pruning")
        method = st.selectbox("Method", methods, index=methods.index(DEFAULTS.method), key="method",
                              help="; ".join(f"**{m}**: {METHOD_LABELS.get(m, m)}" for m in methods), **BIND)
        st.caption(METHOD_LABELS.get(method, method))
        mode = st.radio("Budget", MODES, index=0, key="mode", horizontal=True, help=hint("mode"), **BIND)
        keep, eps = DEFAULTS.keep_ratio, DEFAULTS.epsilon
        if mode == "keep ratio":
            keep = st.slider("Keep ratio κ (share of prunable weights)", KEEP_MIN, KEEP_MAX, DEFAULTS.keep_ratio, KEEP_STEP,
                             key="keep", format="%.3f", help=hint("kappa"), **BIND)
        else:
            eps = st.select_slider("ε: guaranteed relative error per row (log scale)", EPS_OPTIONS,
                                   value=DEFAULTS.epsilon, format_func=fmt_num, key="eps", help=hint("eps", "row"),
                                   **BIND)
        delta = st.select_slider("δ: failure probability (log scale)", DELTA_OPTIONS, value=DEFAULTS.delta,
                                 format_func=fmt_num, key="delta",
                                 help=hint("delta", "L") + "\n\nδ enters L_l, hence the bounds and the allocation, "
                                 "in both modes.", **BIND)
        st.markdown("### Sensitivity (recomputed when these change)")
        auto = st.toggle("|S| from the formula", value=True, key="s_auto", help=hint("S", "eta"), **BIND)
        try:
            facts = engine.model_facts(model, dataset)
        except Exception:  # shown as an error with its fix on the page
            facts = None
        if auto:  # no greyed-out box: it showed the last manual |S| (152) while the formula's (169) was used
            size = st.session_state.get("s", DEFAULTS.sample_size)
        else:
            size = st.number_input("|S|: points in the sample S", min_value=1, max_value=100_000,
                                   value=DEFAULTS.sample_size, step=1, key="s", help=hint("S", "s"), **BIND)
        if facts:
            note = (f"Formula |S| = ⌈3 ln(8 η η_max / δ_S)⌉ = **{facts['formula']}** "
                    f"(η = {facts['eta']:,}, η_max = {facts['eta_max']:,}, δ_S = 1e-16)")
            if auto and facts["formula"] > facts["pool"]:
                note += f"; the S-pool holds {facts['pool']:,} points, so all of them are used"
            st.caption(note)
        seed = st.number_input("Seed (draws S and the samples)", min_value=0, max_value=2**31 - 1, value=0, step=1,
                               key="seed", help=hint("seed"), **BIND)
        patch = st.selectbox("Patch reduction (conv layers)", PATCH_REDUCTIONS, key="patch", help=hint("patch", "P"),
                             **BIND)
        st.caption(PATCH_LABELS[patch])
        device = st.selectbox("Device (training)", DEVICES, key="device", **BIND)
        try:
            _, used = engine.resolve_device(device)
            st.caption(f"Device: {used}. Sensitivities and pruning run on the CPU.")
        except ValueError as exc:
            st.caption(f":red[{exc}]")
        # in a keyed container: a lesson that hides both of its controls hides the whole expander (ui.lessons.GROUPS)
        with st.container(key="advanced"), st.expander("Advanced"):
            allocation = st.selectbox("Allocation (SiPP det., keep-ratio mode)", ALLOCATIONS, key="alloc",
                                      help=hint("alloc"), **BIND)
            st.caption(ALLOCATION_LABELS[allocation] + ". Per-layer densities on the Prune page show the difference.")
            c_prime = st.number_input("C′ (hybrid rule and hybrid det. bound)", min_value=1.0, max_value=100.0,
                                      value=3.0, step=0.5, key="cprime", help=hint("cprime", "hybrid"), **BIND)
    # round: a slider step's float noise (0.10500000000000001) is not a new setting
    settings = Settings(model=model, dataset=dataset, method=method, mode=mode, keep_ratio=round(float(keep), 6),
                        epsilon=float(eps), delta=float(delta), auto_sample=bool(auto), sample_size=int(size),
                        seed=int(seed), patch_reduction=patch, device=device, allocation=allocation,
                        c_prime=float(c_prime))
    st.session_state["_settings"] = settings
    return settings


def current_settings() -> Settings:
    return st.session_state.get("_settings", DEFAULTS)

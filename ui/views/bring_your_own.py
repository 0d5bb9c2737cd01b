"""Bring your own: upload weights for a zoo architecture or an exported program, and optionally a .npz data set.

Every check runs before anything else (sipp_core.io.byo): size, file type, loading with
``torch.load(weights_only=True)`` or the scanned export loader only (never arbitrary pickle), names and
shapes, the class count, a dry forward pass. A refusal is an ``st.error`` that names the fix; the app
and the sidebar keep working.

Uploads are per session: the model, the data set and everything derived from them live in
``st.session_state`` only (never in a process-wide cache), so no other session can see them, and they
go when the session ends.

After a good upload the model is pruned on the chosen data set with the sidebar's method and budget,
using the same engine calls as the Prune page (sensitivities once per upload, |S| and seed from the
sidebar; moving κ or ε re-prunes only): its headline metrics, the per-layer charts and table, and the
pruned state_dict for download.
"""
from __future__ import annotations

import hashlib
import io
import time

import pandas as pd
import streamlit as st
import torch

from sipp_core.errors import SippError
from sipp_core.io.byo import (
    AUTO,
    MODEL_MAX_BYTES,
    describe_model,
    load_exported_upload,
    load_npz_upload,
    load_state_dict_upload,
)
from sipp_core.io.checkpoints import TrainedModel
from sipp_core.pipeline import evaluate_prune, prepare_trained
from sipp_core.zoo.layers import layer_label, left_dense
from sipp_core.zoo.models import MODELS, compatible_models
from sipp_core.zoo.train import accuracy
from ui import engine, show, tables
from ui import verdicts as vd
from ui.charts import layers as charts
from ui.guard import show_error
from ui.kept_uploads import forget, forget_on_clear, kept_upload
from ui.results import export_zip, headline_metrics, verdict_box
from ui.run_store import REOPENED_UPLOAD, record_upload_prune
from ui.settings import METHOD_LABELS, Settings, check_settings
from ui.sidebar import current_settings

STATE = "_byo"  # session_state: {"sig", "model", "record", "desc", "label", "found", "prepared", "reports"}
KINDS = {"state_dict": "weights (state_dict) for a zoo architecture", "export": "exported program (torch.export .pt2)"}
DATA_SOURCES = {"sidebar": "the sidebar's data set", "npz": "upload a .npz data set"}
PREPROCESSING_LABELS = {"as-given": "as given: the values exactly as stored",
                        "scale": "scale uint8 to [0, 1] (divide by 255)",
                        "standardize": "standardise with the train split's mean and std"}
LAYOUTS = """**Weights layouts accepted** (the widths and depth are read off the tensors):

- `nn.Sequential` indices: `1.weight`, `3.weight`, …
  `torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).state_dict(), "w.pt")`
- a class with named layers in the order they run: `fc1`, `fc2`, `fc3` or `conv1`, `conv2`, `fc` (the zoo's own
  names, as in the state_dicts this app exports, are of this kind)
  `torch.save(MyNet().state_dict(), "w.pt")   # self.fc1 = nn.Linear(64, 32); self.fc2 = nn.Linear(32, 10)`
- VGG-style `features.N` / `classifier.N`, or a ResNet's own names
  `torch.save(vgg.state_dict(), "w.pt")   # features.0.weight, …, classifier.0.weight`
- any of these saved from `nn.DataParallel` (`module.`), `torch.compile` (`_orig_mod.`) or a wrapper (`model.`)
  `torch.save(nn.DataParallel(net).state_dict(), "w.pt")`

The layers keep the file's names in charts, tables and downloads, so the pruned state_dict loads back into your
own network with `load_state_dict` (a ResNet saved under other names is shown under the zoo's names, but its
downloads use the file's). Anything else: upload the network as an exported program (.pt2) instead."""
AUTO_LABEL = "auto: the architecture the weights fit"
AUTO_PRUNE_WEIGHTS = 2_000_000  # above this many prunable weights, sensitivities wait for a click
INTRO = ("Prune **your own network**: upload its weights for one of the zoo architectures, or a whole exported "
         "program, and prune it on a zoo data set or your own. Files are checked before anything runs and are "
         "loaded safely: weights with `torch.load(weights_only=True)` (tensors only), exported programs through "
         "PyTorch's export loader after a scan that refuses pickled objects, custom operators and compiled code; "
         "`.npz` data sets without pickle. Nothing you upload is shared with other sessions or kept on disk.")


def _limit_mb() -> int:
    return int(MODEL_MAX_BYTES // 2**20)


# ---- pure helpers (tested without a browser) --------------------------------------------------------

def load_model_upload(kind: str, data, record, arch: str | None = None):
    """(model, ModelDescription) for an upload; ValueError (with the fix) when it is refused."""
    if kind == "state_dict":
        if not arch:
            raise ValueError("choose the architecture the weights belong to")
        model = load_state_dict_upload(data, arch, record)
    elif kind == "export":
        model = load_exported_upload(data, record)
    else:
        raise ValueError(f"unknown upload kind {kind!r}; choose {' or '.join(KINDS)}")
    desc = describe_model(model, record)
    if not desc.prunable:
        raise ValueError("the model has no layer SiPP can prune (nn.Linear or nn.Conv2d, called in the forward pass); "
                         "upload a network with Linear or Conv2d layers")
    return model, desc


def load_data_upload(data, name: str = "upload", seed: int = 0, preprocessing: str = "as-given"):
    return load_npz_upload(data, name=name, seed=seed, preprocessing=preprocessing)


def prepare_upload(model, record, *, sample_size: int | None = None, seed: int = 0, patch_reduction: str = "max",
                   heldout: int = 500, label: str = "upload", progress=None):
    """pipeline.prepare for an uploaded model: its test accuracy, then S, sensitivities and test logits."""
    t0 = time.perf_counter()
    model = model.eval()
    trained = TrainedModel(model, label, record.name, 0, int(seed), accuracy(model, record.x_test, record.y_test),
                           "upload", "")
    return prepare_trained(trained, record, sample_size=sample_size, seed=int(seed), patch_reduction=patch_reduction,
                           heldout=heldout, progress=progress, load_s=time.perf_counter() - t0)


def prune_upload(prepared, s: Settings):
    """evaluate_prune with the sidebar's method and budget."""
    return evaluate_prune(prepared, **s.prune_kwargs())


# ---- the page -------------------------------------------------------------------------------------

FIX_WORDS = ("fix", "save it", "export it", "re-export", "choose", "upload", "use the", "use a", "lower", "raise")
FIXES = {
    "model": "Fix: upload the weights of the architecture chosen above, saved with "
             "torch.save(model.state_dict(), 'weights.pt'), or an exported program for this data set.",
    "data": "Fix: save the data with np.savez('data.npz', x_train=..., y_train=..., x_test=..., y_test=...): "
            "images (N, C, H, W) or (N, H, W, C) or vectors (N, D), integer labels 0..K−1 shaped (N,).",
    "prune": "Fix: change the method or budget in the sidebar.",
}


def refusal(what: str, exc: BaseException, kind: str = "model") -> str:
    """The st.error text for a refused upload: the engine's problem and fix (a SippError that names one), else
    the reason, and this page's fix for that kind of file when the reason names none."""
    if isinstance(exc, SippError) and exc.fix:
        return f"{what} was refused: {exc.problem}. Fix: {exc.fix.rstrip('.')}."
    msg = str(exc).strip().rstrip(".") or type(exc).__name__
    fix = "" if any(w in msg.lower() for w in FIX_WORDS) else " " + FIXES.get(kind, "")
    return f"{what} was refused: {msg}.{fix}"


def _refuse(what: str, exc: BaseException, kind: str = "model") -> None:
    if isinstance(exc, ValueError):
        st.error(refusal(what, exc, kind), icon=":material/block:")
    else:
        show_error(exc)


def _signature(kind, arch, data_src, sidebar_data, model_file, npz_file, preprocessing) -> tuple:
    def fid(f):
        return None if f is None else (f.file_id, f.name, f.size)

    return (kind, arch if kind == "state_dict" else None, data_src,
            sidebar_data if data_src == "sidebar" else None, fid(model_file), fid(npz_file),
            preprocessing if data_src == "npz" else None)


def _record(s: Settings, data_src: str, npz_file, preprocessing: str = "as-given"):
    if data_src == "npz":
        if npz_file is None:
            return None
        name = npz_file.name.rsplit(".", 1)[0][:40] or "upload"
        return load_data_upload(npz_file.getvalue(), name=name, seed=0, preprocessing=preprocessing)
    return engine.load_record(s.dataset)


def _summary(state: dict) -> None:
    desc, rec = state["desc"], state["record"]
    st.success(f"**{state['label']}** loaded and checked on **{rec.name}** ({len(rec.x_test):,} test points, "
               f"{rec.num_classes} classes, inputs {tuple(rec.input_shape)}): {len(desc.prunable)} prunable layer(s), "
               f"{desc.prunable_weights:,} prunable weights of {desc.total_parameters:,} parameters "
               f"({100 * desc.prunable_share:.1f}%)."
               + (f" The weights fit the zoo's {state['found']} architecture." if state.get("found") else ""),
               icon=":material/check_circle:")
    renamed = any("file_name" in d for d in desc.prunable)  # open: the model runs under names the file does not use
    with st.expander("What SiPP sees in this model", icon=":material/account_tree:", expanded=renamed):
        show.table(pd.DataFrame([dict(layer=layer_label(d.get("file_name", d["name"]), d["kind"], d["weight_shape"]),
                                      **({"app's module name": d["name"]} if renamed else {}),
                                      kind=d["kind"], shape=" × ".join(map(str, d["weight_shape"])),
                                      weights=d["weights"]) for d in desc.prunable]), hide_index=True, width="stretch",
                   column_config={"weights": st.column_config.NumberColumn(format="localized")})
        if desc.dense:
            st.caption(left_dense((d["name"], d["reason"]) for d in desc.dense))
        for n in desc.notes:
            st.caption(n)


def _settings_fit(s: Settings, state: dict) -> bool:
    """The sidebar's settings can prune this upload; else their errors, with the fix, and False."""
    problems = check_settings(s)
    for p in problems:
        st.error(p, icon=":material/error:")
    if problems:
        return False
    if not s.auto_sample and s.sample_size > len(state["record"].x_pool):
        st.error(f"|S| = {s.sample_size:,} is more than this data set's S-pool holds ({len(state['record'].x_pool):,}). "
                 "Fix: choose a smaller |S| in the sidebar or switch '|S| from the formula' on.", icon=":material/error:")
        return False
    return True


def _upload_prepared(s: Settings, state: dict, heavy: tuple):
    """The upload's sensitivities for the heavy settings (one set per session; behind a click for a big
    network), or None while that click is pending or after a refusal (shown)."""
    prepared = state.get("prepared", {}).get(heavy)
    if prepared is not None:
        return prepared
    big = state["desc"].prunable_weights > AUTO_PRUNE_WEIGHTS
    if big and not st.button("Compute sensitivities and prune", type="primary", key="byo_prepare"):
        st.info(f"{state['desc'].prunable_weights:,} prunable weights: computing sensitivities can take a while.",
                icon=":material/hourglass:")
        return None
    bar = st.progress(0.0, text="computing sensitivities…")
    try:
        prepared = prepare_upload(state["model"], state["record"], sample_size=heavy[0], seed=heavy[1],
                                  patch_reduction=heavy[2], label=state["label"],
                                  progress=lambda f, m: bar.progress(min(max(float(f), 0.0), 1.0), text=m[:120]))
    except Exception as exc:  # noqa: BLE001
        bar.empty()
        _refuse("Pruning the upload", exc, "prune")
        return None
    bar.empty()
    state["prepared"] = {heavy: prepared}  # one set of sensitivities per session
    state["reports"] = {}
    return prepared


def _upload_report(s: Settings, state: dict, heavy: tuple, prepared):
    """The prune for the sidebar's method and budget (the last four kept per session; each new one saved to the
    run history), or None after a refusal (shown)."""
    rkey = (heavy, tuple(sorted(s.prune_kwargs().items())))
    report = state["reports"].get(rkey)
    if report is None:
        try:
            report = prune_upload(prepared, s)
        except Exception as exc:  # noqa: BLE001
            _refuse("Pruning with these settings", exc, "prune")
            return None
        if len(state["reports"]) >= 4:
            state["reports"].pop(next(iter(state["reports"])))
        state["reports"][rkey] = report
        record_upload_prune(s, report, state["label"])  # every prune lands in the run history
    return report


def _show_pruned(s: Settings, state: dict, prepared, report) -> None:
    st.subheader("Pruned with the sidebar's settings")
    budget = f"keep ratio κ = {s.keep_ratio:.3f}" if s.mode == "keep ratio" else f"ε = {s.epsilon:g}"
    st.caption(f"{METHOD_LABELS.get(s.method, s.method)} · {budget} · seed {s.seed} · |S| = {prepared.sample_size} "
               "(change them in the sidebar; the sidebar's model is not used here)")
    h = tables.headline(report)
    headline_metrics(h, detailed=False)
    verdict_box(vd.prune_verdict(h))
    show.chart_row([charts.density_figure(report), charts.bound_figure(report)])
    st.subheader("Per layer")
    show.layer_table(tables.layer_table(report))

    def state_dict_bytes():
        buf = io.BytesIO()
        torch.save(report.result.state_dict(), buf)
        return buf.getvalue()

    def masks_bytes():
        buf = io.BytesIO()
        torch.save(report.result.masks_state(), buf)
        return buf.getvalue()

    c1, c2, c3 = st.columns(3)
    c1.download_button("Pruned state_dict (.pt)", state_dict_bytes, f"{state['label']}-pruned.pt",
                       "application/octet-stream", on_click="ignore", icon=":material/download:", key="byo_download")
    c2.download_button("Masks (.pt)", masks_bytes, f"{state['label']}-masks.pt", "application/octet-stream",
                       on_click="ignore", icon=":material/download:", key="byo_download_masks")
    c3.download_button("All files (.zip)", lambda: export_zip(report),
                       f"{state['label']}-pruned.zip", "application/zip", on_click="ignore",
                       icon=":material/download:", key="byo_download_zip",
                       help="model.pt2 (runs without your classes), model.onnx (checked with onnxruntime against "
                            "PyTorch on the test split), masks.pt, state_dict.pt, report.json and report.csv")


def _prune_section(s: Settings, state: dict) -> None:
    if not _settings_fit(s, state):
        return
    heavy = (None if s.auto_sample else int(s.sample_size), int(s.seed), s.patch_reduction)
    prepared = _upload_prepared(s, state, heavy)
    if prepared is None:
        return
    report = _upload_report(s, state, heavy, prepared)
    if report is None:
        return
    _show_pruned(s, state, prepared, report)


def _data_inputs(s: Settings, mb: int) -> tuple[str, object, str]:
    """The data set column's widgets: (where the data comes from, the uploaded .npz or None, its preprocessing)."""
    st.markdown("#### Data set")
    data_src = st.radio("Prune and evaluate on", list(DATA_SOURCES), key="byo_data_src", persist_state="session",
                        format_func=lambda k: f"{DATA_SOURCES[k]} ({s.dataset})" if k == "sidebar" else DATA_SOURCES[k])
    npz_file = None
    if data_src == "npz":
        npz_file = _uploader("npz", "byo_npz_file", f"Data set (.npz, at most {mb} MB)",
                             "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...): images (N, C, H, W) "
                             "or (N, H, W, C), or vectors (N, D); labels 0..K−1 shaped (N,). Read without pickle.")
        preprocessing = st.selectbox("Preprocessing of its inputs", list(PREPROCESSING_LABELS),
                                     format_func=PREPROCESSING_LABELS.get, key="byo_preprocessing",
                                     persist_state="session",
                                     help="What is done to the stored inputs before they reach the network. "
                                          "Choose what your model was trained on: 'as given' for a model trained "
                                          "on the stored values (the default: accuracies then equal plain "
                                          "PyTorch's on the same arrays).")
        return data_src, npz_file, preprocessing
    return data_src, npz_file, "as-given"


def _checked_record(s: Settings, data_src: str, npz_file, right, preprocessing: str = "as-given"):
    """The data set (None when refused or not uploaded yet), with its summary or refusal in the right column."""
    try:
        record = _record(s, data_src, npz_file, preprocessing)
    except Exception as exc:  # noqa: BLE001
        with right:
            _refuse("The data set", exc, "data")
        record = None
    with right:
        if record is not None:
            st.caption(f"{record.name}: inputs {tuple(record.input_shape)}, {record.num_classes} classes, "
                       f"{len(record.x_train):,} train / {len(record.x_pool):,} S-pool / {len(record.x_test):,} test; "
                       f"preprocessing: {PREPROCESSING_LABELS.get(record.preprocessing, record.preprocessing)}")
        elif data_src == "npz" and npz_file is None:
            st.caption("Upload a .npz to continue (or use the sidebar's data set).")
    return record


def _model_inputs(s: Settings, kind: str, record, mb: int) -> tuple[str | None, object]:
    """The model column's uploader (and the architecture for weights): (architecture or None, the file or None)."""
    arch = None
    if kind == "state_dict":
        names = compatible_models(tuple(record.input_shape)) if record is not None else []
        names = [AUTO] + (names or list(MODELS))
        arch = st.selectbox("Architecture", names, key="byo_arch", persist_state="session",
                            format_func=lambda n: AUTO_LABEL if n == AUTO else f"{n}: {MODELS[n].description}",
                            help="The zoo network the weights belong to (models that fit the data set's inputs). "
                                 "auto tries each in the zoo's order and takes the first the weights fit exactly; "
                                 "choose one to hear precisely why the weights do not fit it.")
        model_file = _uploader("weights", "byo_model_file", f"Weights (.pt / .pth, at most {mb} MB)",
                               "torch.save(model.state_dict(), 'weights.pt'); a dict with a 'state_dict' entry works "
                               "too. Loaded with weights_only=True.")
        with st.expander("Which weights files fit an architecture?"):
            st.markdown(LAYOUTS)
    else:
        model_file = _uploader("program", "byo_pt2_file", f"Exported program (.pt2, at most {mb} MB)",
                               "x = a batch of two or more inputs; ep = torch.export.export(model.eval(), (x,), "
                               "dynamic_shapes=({0: torch.export.Dim('batch')},)); torch.export.save(ep, "
                               "'model.pt2'). A program exported with a fixed batch size (no dynamic_shapes) works "
                               "too: it runs in pieces of that size.")
    return arch, model_file


# The uploaders take any file: a file of the wrong kind gets the loaders' own refusal with its fix ("a torch.save
# file: choose weights"), where a type filter showed only a red mark whose message was cut to a pixel.


def _uploader(slot: str, key: str, label: str, help: str):
    """A file uploader whose file is kept for the session (ui/kept_uploads.py): the file, or the one kept earlier
    when a page switch emptied it (with a line saying so and a Remove button), or None."""
    f = kept_upload(slot, st.file_uploader(label, key=key, on_change=forget_on_clear, args=(slot, key), help=help))
    _kept_note(slot, f)
    return f


def _kept_note(slot: str, f) -> None:
    """Under an uploader left empty by a page switch: the file kept from earlier stands in for it, and can go."""
    if f is None or not f.kept:
        return
    st.caption(f"Using **{f.name}** ({f.size / 1024:,.0f} KiB), uploaded earlier in this session; drop another file "
               "above to replace it.")
    st.button(f"Remove {f.name}", key=f"byo_forget_{slot}", on_click=forget, args=(slot,), icon=":material/close:")


def _reopened_notice(model_file) -> None:
    """A run reopened from the history asks for its own file: say which, and whether this is it."""
    want = st.session_state.get(REOPENED_UPLOAD)
    if not want:
        return
    pre = f", preprocessing {want['preprocessing']}" if want.get("preprocessing") else ""
    if model_file is None:
        st.info(f"Reopened run #{want['run']} from the run history: upload **{want['label']}** again (its sha256 "
                f"starts with {want['sha256']}) with the data set {want['dataset']}{pre}. The sidebar holds the "
                "run's settings; nothing is pruned until the file is here.", icon=":material/history:")
        return
    digest = hashlib.sha256(model_file.getvalue()).hexdigest()
    if want["sha256"] and digest.startswith(want["sha256"]):
        st.success(f"This is the file of run #{want['run']} (sha256 {digest[:10]}…).", icon=":material/history:")
    else:
        st.warning(f"This file (sha256 {digest[:10]}…) is not the one run #{want['run']} pruned (sha256 "
                   f"{want['sha256']}…); its results will differ from the saved run's.", icon=":material/history:")


def _checked_upload(sig: tuple, kind: str, arch: str | None, model_file, record) -> dict:
    """The session's checked upload: loaded once per signature (files and choices), refused with the fix."""
    state = st.session_state.get(STATE)
    if state is None or state.get("sig") != sig:
        st.session_state.pop(STATE, None)
        digest = hashlib.sha256(model_file.getvalue()).hexdigest()[:10]
        with st.spinner("Checking the upload…"):
            try:
                model, desc = load_model_upload(kind, model_file.getvalue(), record, arch)
            except Exception as exc:  # noqa: BLE001
                _refuse(f"“{model_file.name}”", exc)
                st.stop()
        # auto: the label names the architecture found
        label = (getattr(model, "zoo_architecture", arch) if kind == "state_dict" else "exported") + f"-{digest}"
        found = None
        if arch == AUTO:
            opts = getattr(model, "zoo_options", "")
            found = f"**{model.zoo_architecture}**" + (f" ({opts})" if opts else "") + getattr(model, "zoo_note", "")
        state = dict(sig=sig, model=model, record=record, desc=desc, label=label, found=found, prepared={}, reports={})
        st.session_state[STATE] = state
    return state


def render() -> None:
    s = current_settings()
    st.title("Bring your own")
    st.markdown(INTRO)
    mb = _limit_mb()
    left, right = st.columns(2)
    with left:
        st.markdown("#### Model")
        kind = st.radio("What are you uploading?", list(KINDS), format_func=KINDS.get, key="byo_kind",
                        persist_state="session")
    with right:
        data_src, npz_file, preprocessing = _data_inputs(s, mb)
    record = _checked_record(s, data_src, npz_file, right, preprocessing)
    with left:
        arch, model_file = _model_inputs(s, kind, record, mb)
    _reopened_notice(model_file)
    if record is None:
        st.stop()
    if model_file is None:
        st.info("Upload a model file to check it and prune it. Nothing runs before the checks pass.",
                icon=":material/upload_file:")
        st.session_state.pop(STATE, None)
        st.stop()

    sig = _signature(kind, arch, data_src, s.dataset, model_file, npz_file, preprocessing)
    state = _checked_upload(sig, kind, arch, model_file, record)
    _summary(state)
    _prune_section(s, state)

"""What a link may carry: one rule per bound control, and the sentences that name a value the control would drop.

A bound control (bind="query-params") reads a link's value as the exact text it shows, and drops anything else
without a word (and takes it out of the address bar): "WT" for wt, "2.0" for the slider's "2", "fc2" where the box
shows "fc2 · Linear 300→100". So each page checks its link on its first visit against these rules (ui.sidebar:
warn_about_link, page_link_problems), and a warning says what to write. No streamlit here.
"""
from __future__ import annotations

import math

from sipp_core.options import ALLOCATIONS, DEVICES, PATCH_REDUCTIONS
from ui.settings import DELTA_OPTIONS, EPS_OPTIONS, MODES, Settings, fmt_num


def link_shown(options, format_func=None, default=None):
    """A choice control's link rule: the texts it shows, which a link must carry, and each option's own name (in
    lower case) with its shown text, so that a link naming the option (filters_target=flops) is told to write the
    shown text (FLOPs). default: the option the control shows without a link; a link writing it another way
    (ns_paths=16.0) is not flagged, since the control shows it anyway."""
    def text(o):
        return str(format_func(o)) if format_func is not None else str(o)

    shown = tuple(text(o) for o in options)
    return ("choice", shown, {str(o).lower(): t for o, t in zip(options, shown)},
            None if default is None else text(default))


def link_many(options):
    """A multiselect's link rule: each of its values repeated (to_methods=wt&to_methods=snip), each one option."""
    return ("many", tuple(str(o) for o in options))


def link_number(lo, hi, integer=False):
    return ("int" if integer else "float", lo, hi)


def link_log(options, default: float):
    """A slider of fmt_num-written values' link rule (a value is taken only as the slider writes it: 2, 1e-8)."""
    return ("log", tuple(float(o) for o in options), float(default))


def sidebar_url_spec(models, datasets, methods) -> dict:
    """{query parameter: what it may hold} for the shared sidebar's widgets."""
    return {
        "model": link_shown(models, default=Settings.model), "data": link_shown(datasets, default=Settings.dataset),
        "method": link_shown(methods, default=Settings.method), "mode": link_shown(MODES, default=Settings.mode),
        "keep": link_slider(link_number(0.005, 1.0)),
        "eps": link_slider(link_log(EPS_OPTIONS, Settings.epsilon)),
        "delta": link_slider(link_log(DELTA_OPTIONS, Settings.delta)),
        "s_auto": ("bool",), "s": link_number(1, 100_000, integer=True),
        "seed": link_number(0, 2**31 - 1, integer=True),
        "patch": link_shown(PATCH_REDUCTIONS, default=Settings.patch_reduction),
        "device": link_shown(DEVICES, default=Settings.device),
        "alloc": link_shown(ALLOCATIONS, default=Settings.allocation),
        "cprime": link_number(1.0, 100.0),
    }


def _spelled_as(raw: str, options, names: dict | None = None) -> str | None:
    """The option a link's value means when it is written another way than the widget writes it: spaces around it,
    another case (WT for wt), the option's name where the control shows a label (fc2 for "fc2 · Linear 300→100"),
    the start of one label only (5 for "5 · s = max over S"), a number with decimals (32.0 for 32); else None."""
    bare = raw.strip()
    for o in options:
        if bare == o or bare.lower() == o.lower():
            return o
    if names and bare.lower() in names:
        return names[bare.lower()]
    starts = [o for o in options if bare and o.lower().startswith(bare.lower() + " ")]
    if len(starts) == 1:
        return starts[0]
    try:
        value = float(raw)
    except ValueError:
        return None
    for o in options:
        try:
            if math.isclose(value, float(o), rel_tol=1e-9):
                return o
        except ValueError:
            continue
    return None


def _why_not(raw: str, rule) -> str | None:
    """None if the widget takes raw as it is written, else the reason in words. A widget reads a choice as the
    exact text it shows: "WT", "32.0" or "wt " were dropped where the check used to accept them."""
    kind = rule[0]
    if kind == "choice":
        if raw in rule[1]:
            return None
        meant = _spelled_as(raw, rule[1], rule[2] if len(rule) > 2 else None)
        if meant is not None and len(rule) > 3 and meant == rule[3]:
            return None  # the default, written another way: the control shows it all the same
        if meant is not None:
            return f"the control takes a value only as it writes it: {meant}"
        return "it is not one of " + ", ".join(rule[1])
    if kind == "bool":  # read as written: " false" is dropped
        if raw.lower() in ("true", "false"):
            return None
        word = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}.get(
            raw.strip().lower(), raw.strip().lower())
        return f"it must be true or false, as written: {word}" if word in ("true", "false") else \
            "it must be true or false"
    try:
        value = float(raw)
    except ValueError:
        return "it is not a number"
    if math.isnan(value):
        return "it is not a number"
    if math.isinf(value):
        return "it is not a finite number"
    if kind == "log":
        near = [o for o in rule[1] if math.isclose(value, o, rel_tol=1e-9)]
        if not near:
            return (f"it is not one of the slider's values ({fmt_num(rule[1][0])} to {fmt_num(rule[1][-1])}: 1, 2, 5 "
                    "per decade)")
        # The slider reads the URL as the text it shows: 2.0 or 1e-08 were dropped ("2", "1e-8"). The default is
        # what the slider shows anyway.
        shown = fmt_num(near[0])
        if raw != shown and not math.isclose(near[0], rule[2], rel_tol=1e-9):
            return f"the slider takes a value only as it writes it: {shown}"
        return None
    _, lo, hi = rule
    if kind == "int" and value != int(value):
        return "it must be a whole number"
    span = f"{lo:,} to {hi:,}" if kind == "int" else f"{fmt_num(lo)} to {fmt_num(hi)}"
    return None if lo <= value <= hi else f"it is outside {span}"


def url_problems(params, spec: dict, where: str = "the sidebar") -> list[str]:
    """One sentence per URL parameter whose value a widget would not accept (and would replace), or would take
    otherwise than written. where: the controls' place ("the sidebar", "the page")."""
    out = []
    for key, rule in spec.items():
        if key not in params:
            continue
        values = params.get_all(key) if hasattr(params, "get_all") else params[key]
        values = values if isinstance(values, list) else [values]  # a plain dict: a list for a repeated value
        if rule[0] == "many":
            out += _many_problems(key, [str(v) for v in values], rule, where)
            continue
        if isinstance(rule, Slider) and len([v for v in values if str(v) != ""]) > 1:
            out.append(f"The link gives {key} {len(values)} values ({_short(', '.join(map(str, values)))}); a slider "
                       f"takes one, so all were ignored and {where} shows its default. Fix: write {key} once.")
            continue
        raw = str(values[-1]) if values else ""
        truncated = _truncated(raw, rule)
        if truncated is not None:  # a number box for whole numbers keeps the whole part (6.5 shows 6)
            out.append(f"The link's value {key}={_short(raw)!r} is not a whole number: {where} uses {truncated:,}. "
                       f"Fix: write {key}={truncated} in the link, or another whole number.")
            continue
        reason = _why_not(raw if rule[0] in ("choice", "log", "bool") else raw.strip(), rule)
        if reason:
            out.append(f"The link's value {key}={_short(raw)!r} was ignored because {reason}; {where} shows its "
                       f"default instead. Fix: choose {key} {_place(where)}, or correct the link.")
    return out


class Slider(tuple):
    """A link rule for a slider (link_slider): a repeated value is read as a range, which it refuses."""


def link_slider(rule) -> Slider:
    return Slider(rule)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _many_problems(key: str, values: list[str], rule, where: str) -> list[str]:
    """A multiselect keeps the link's values it has (empty ones are skipped) and drops the others: one sentence
    naming the dropped ones, what each means where it is only spelled otherwise, and what the box shows."""
    given = [v for v in values if v != ""]
    if not given:
        return []  # an empty box, which the page itself refuses in words
    dropped = [v for v in given if v not in rule[1]]
    if not dropped:
        return []
    kept = [v for v in given if v in rule[1]]
    parts = [p.strip() for v in dropped for p in (v.split(",") if "," in v else [v]) if p.strip()]
    meant = [_spelled_as(p, rule[1]) for p in parts]
    shows = f"the box holds {', '.join(kept)}" if kept else f"{where} shows its default"
    if all(meant):
        fix = "write " + "&".join(f"{key}={m}" for m in dict.fromkeys(kept + meant))
        why = "a box of several values takes each as its own parameter, spelled as it writes it" if any(
            "," in v for v in dropped) else "the box takes a value only as it writes it"
    else:
        fix = f"choose {key} {_place(where)}, or correct the link"
        why = "not every value is one of " + ", ".join(rule[1])
    return [f"The link's {'values' if len(dropped) > 1 else 'value'} {key}={_short(', '.join(dropped))!r} "
            f"{'were' if len(dropped) > 1 else 'was'} dropped because {why}; {shows}. Fix: {fix}."]


def _place(where: str) -> str:
    return f"{'in' if 'sidebar' in where else 'on'} {where}"


def unused_link_values(params, spec: dict | None = None) -> dict[str, str]:
    """{parameter: a sentence} for each sidebar value a link sets that the other settings leave unused: |S| while the
    formula chooses it, ε in keep-ratio mode, κ in ε-and-δ mode. Its control is not drawn, so the sentence replaces
    url_problems' (which says the control shows its default) and names, with spec, a value it would not take
    either. The value is kept, and acts once that setting changes."""
    def has(key):
        return key in params and str(params[key]).strip() != ""

    mode = str(params["mode"]) if "mode" in params else MODES[0]
    out = {}
    if has("s") and str(params["s_auto"] if "s_auto" in params else "true").lower() != "false":  # as read
        out["s"] = "is not used while |S| comes from the formula. Fix: add s_auto=false to the link"
    if has("eps") and mode != "eps and delta":
        out["eps"] = "is not used in keep-ratio mode. Fix: add mode=eps+and+delta to the link"
    if has("keep") and mode == "eps and delta":
        out["keep"] = ("is not used in ε-and-δ mode, where ε sets the kept share. Fix: drop keep from the link, or "
                       "drop mode to use it")
    for key, text in out.items():
        raw = str(params[key])
        reason = _why_not(raw if key == "eps" else raw.strip(), spec[key]) if spec and key in spec else None
        out[key] = f"The link's value {key}={raw!r} {text}" + (f", and correct the value: {reason}." if reason else ".")
    return out


def _truncated(raw: str, rule) -> int | None:
    """The whole number a whole-number box takes for a link's decimal value inside its range, else None."""
    if rule[0] != "int":
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value) or value == int(value) or not rule[1] <= int(value) <= rule[2]:
        return None
    return int(value)

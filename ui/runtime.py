"""Process-wide settings for the app server (no streamlit)."""
from __future__ import annotations

import sys

# Before altair (and so jsonschema) is first imported: jsonschema's format checker imports rfc3987_syntax when it
# is installed (the Jupyter extras bring it), and that compiles 38 grammars at import: 8 s of altair's 10.7 s
# import on a 2-core machine at load 10, paid by the first page of a fresh server. It only checks the "iri"
# formats, which the Vega-Lite schema never uses, so chart validation is unchanged without it.
sys.modules.setdefault("rfc3987_syntax", None)

import altair as alt  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from sipp_core.runtime import configure_torch, torch_threads  # noqa: E402

__all__ = ["app_icon", "configure_torch", "torch_threads"]  # configure_torch and torch_threads: for studio.py

# Altair validates every part of a chart as it is built, then the whole chart again when Streamlit draws it; the
# second check alone catches the same errors (with a terser message). Building the Prune page's two charts takes
# about half as long without the first: a slider move redraws them.
alt.utils.schemapi.disable_debug_mode()


def app_icon():
    """A small favicon drawn locally (a material-symbol icon would be fetched from Google's CDN: not offline)."""
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([2, 2, 62, 62], radius=12, fill=(0, 114, 178, 255))
    try:
        font = ImageFont.load_default(size=40)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    d.text((32, 33), "S", fill="white", font=font, anchor="mm")
    return img

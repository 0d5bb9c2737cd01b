"""Process-wide settings for the app server (no streamlit)."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from sipp_core.runtime import configure_torch, torch_threads

__all__ = ["app_icon", "configure_torch", "torch_threads"]  # configure_torch and torch_threads: for studio.py


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

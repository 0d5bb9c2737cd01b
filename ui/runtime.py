"""Process-wide settings for the app server (no streamlit)."""
from __future__ import annotations

import os


def torch_threads() -> int:
    """Intra-op threads for the app process: SIPP_TORCH_THREADS, else half the cores (at most 4, at least 1).

    The app runs one script thread per browser session, so cross-session parallelism comes from
    those threads; a wide intra-op pool on a small or busy machine mostly spins. Measured on a
    loaded 2-core box: evaluate_prune for lenet300 took 0.2 s with 1 thread and 4-6 s with 2.
    """
    env = os.environ.get("SIPP_TORCH_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def configure_torch() -> int:
    import torch

    n = torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def app_icon():
    """A small favicon drawn locally (a material-symbol icon would be fetched from Google's CDN: not offline)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([2, 2, 62, 62], radius=12, fill=(0, 114, 178, 255))
    try:
        font = ImageFont.load_default(size=40)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    d.text((32, 33), "S", fill="white", font=font, anchor="mm")
    return img

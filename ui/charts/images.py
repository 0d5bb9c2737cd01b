"""Large heatmaps as PIL images with a title, axis labels and a colour bar (no streamlit).

A 300 x 784 layer has 235,200 edges: as an interactive chart it would freeze a
browser, as an image it costs a few milliseconds and ~50 kB. Colours follow
the Okabe-Ito palette (blue = positive, orange = negative, grey = pruned) and
viridis for counts, both colour-blind safe.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BLUE = np.array([0, 114, 178], dtype=float)
ORANGE = np.array([230, 159, 0], dtype=float)
WHITE = np.array([255, 255, 255], dtype=float)
PRUNED = np.array([214, 214, 214], dtype=float)
PRUNED_LIGHT = np.array([238, 238, 238], dtype=float)
_VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                     [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]], dtype=float)


# Type sizes in pixels of the image; the app draws a 300 x 784 layer's map about 0.8x wide at 1280 px,
# which keeps labels above 13 px on a projector.
TITLE_PX, TEXT_PX = 22, 17


def _font(size: int):
    """DejaVu Sans where the system has it (it draws the → and · of layer labels), else Pillow's own font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _safe(text: str, font) -> str:
    """The text with → written as -> where the font has no arrow glyph (it would draw an empty box)."""
    try:
        has_arrow = font.getmask("→").getbbox() != font.getmask("\ufffe").getbbox()
    except Exception:  # bitmap fonts of old Pillow cannot say
        has_arrow = False
    return text if has_arrow else text.replace("→", "->")


def viridis(t: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] to RGB (H, W, 3) floats with a 10-stop viridis."""
    t = np.clip(np.nan_to_num(t), 0, 1) * (len(_VIRIDIS) - 1)
    i = np.minimum(t.astype(int), len(_VIRIDIS) - 2)
    frac = (t - i)[..., None]
    return _VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac


def diverging(v: np.ndarray, lim: float) -> np.ndarray:
    """Orange (negative) - white - blue (positive) for v / lim in [-1, 1]."""
    t = np.clip(v / (lim or 1.0), -1, 1)[..., None]
    pos = WHITE * (1 - t) + BLUE * t
    neg = WHITE * (1 + t) + ORANGE * (-t)
    return np.where(t >= 0, pos, neg)


def _scale_for(rows: int, cols: int, max_w: int, max_h: int) -> int:
    return int(max(1, min(max_w // max(cols, 1), max_h // max(rows, 1), 12)))


def _compose(rgb: np.ndarray, title: str, subtitle: str, xlabel: str, ylabel: str, bar: np.ndarray,
             bar_ticks: list[tuple[float, str]], max_w: int = 900, max_h: int = 520, legend: list | None = None,
             index_ticks: bool = True) -> Image.Image:
    """Put an (H, W, 3) array on a canvas with title, axis labels, colour bar and tick labels."""
    h, w = rgb.shape[:2]
    k = _scale_for(h, w, max_w, max_h)
    if h * k < 60:  # very flat layers: stretch rows so they stay visible
        ky = int(np.ceil(60 / h))
    else:
        ky = k
    img = Image.fromarray(rgb.astype(np.uint8)).resize((w * k, h * ky), Image.NEAREST)
    f_title, f_text = _font(TITLE_PX), _font(TEXT_PX)
    left, top, right, bottom = 80, 74, 170, 66
    W = img.width + left + right
    H = max(img.height, 200) + top + bottom
    canvas = Image.new("RGB", (W, H), "white")
    canvas.paste(img, (left, top))
    d = ImageDraw.Draw(canvas)
    d.text((10, 8), _safe(title, f_title), fill="black", font=f_title)
    d.text((10, 40), _safe(subtitle, f_text), fill=(85, 85, 85), font=f_text)
    d.rectangle([left - 1, top - 1, left + img.width, top + img.height], outline=(120, 120, 120))
    if index_ticks:  # first and last index of each axis
        d.text((left, top + img.height + 4), "0", fill="black", font=f_text)
        d.text((left + img.width - 30, top + img.height + 4), f"{w - 1}", fill="black", font=f_text)
        d.text((left - 20, top - 2), "0", fill="black", font=f_text)
        d.text((left - 10 - 9 * len(str(h - 1)), top + img.height - 16), f"{h - 1}", fill="black", font=f_text)
    d.text((left + img.width // 2 - 40, top + img.height + 24), xlabel, fill="black", font=f_text)
    ytxt = Image.new("RGBA", (220, TEXT_PX + 6), (255, 255, 255, 0))
    ImageDraw.Draw(ytxt).text((0, 0), ylabel, fill="black", font=f_text)
    ytxt = ytxt.rotate(90, expand=True)
    canvas.paste(ytxt, (8, top + max(0, img.height // 2 - 110)), ytxt)
    # colour bar
    bh = max(min(img.height, 260), 160)
    bx = left + img.width + 24
    col = np.repeat(bar[::-1][:, None, :], 1, axis=1)  # top = high
    bar_img = Image.fromarray(col.astype(np.uint8)).resize((18, bh), Image.BILINEAR)
    canvas.paste(bar_img, (bx, top))
    d.rectangle([bx - 1, top - 1, bx + 18, top + bh], outline=(120, 120, 120))
    for frac, label in bar_ticks:
        y = top + int((1 - frac) * (bh - 1))
        d.line([bx + 18, y, bx + 24, y], fill="black")
        d.text((bx + 28, y - TEXT_PX // 2), label, fill="black", font=f_text)
    if legend:
        y = top + bh + 10
        for color, label in legend:
            d.rectangle([bx, y, bx + 18, y + 14], fill=tuple(int(c) for c in color), outline=(120, 120, 120))
            d.text((bx + 24, y - 1), label, fill="black", font=f_text)
            y += TEXT_PX + 6
    return canvas


def signed_strength(v: np.ndarray, lim: float, floor: float = 0.4) -> np.ndarray:
    """Like `diverging` but never near white: |v| maps to [floor, 1] of the sign's colour, so a kept
    edge stays visible on a light background however small its value."""
    t = np.clip(np.abs(v) / (lim or 1.0), 0, 1)[..., None]
    a = floor + (1 - floor) * t
    col = np.where((v >= 0)[..., None], BLUE, ORANGE)
    return WHITE * (1 - a) + col * a


def kept_heatmap(mask: np.ndarray, values: np.ndarray, title: str, max_w: int = 900, max_h: int = 520) -> Image.Image:
    """F x J kept-edge map: kept edges coloured by sign and size of their value after pruning, pruned edges light grey."""
    lim = float(np.abs(values[mask]).max()) if mask.any() else 1.0
    rgb = np.where(mask[..., None], signed_strength(values, lim), PRUNED_LIGHT)
    bar = signed_strength(np.linspace(-lim, lim, 256), lim)
    ticks = [(0.0, f"{-lim:.3g}"), (0.5, "0"), (1.0, f"{lim:.3g}")]
    F, J = mask.shape
    sub = f"{int(mask.sum()):,} of {mask.size:,} edges kept ({100 * mask.mean():.2f}%); blue +, orange -, darker = larger"
    return _compose(rgb, title, sub, "input j", "output unit f", bar, ticks, max_w, max_h,
                    legend=[(PRUNED_LIGHT, "pruned")])


def count_maps(panels: list[tuple[str, np.ndarray]], title: str, unit: str, scale: int = 1) -> Image.Image:
    """Side-by-side (H, W) maps on ONE shared viridis scale with a colour bar (e.g. edges per pixel)."""
    vmax = max(float(np.nanmax(p)) for _, p in panels) or 1.0
    f_title, f_text = _font(TITLE_PX), _font(TEXT_PX)
    h, w = panels[0][1].shape
    k = max(1, min(30, max(scale, 240 // max(h, w))))
    tile_w, tile_h = w * k, h * k
    gap, top, left = 24, 76, 12
    bar_w = 160
    W = left + len(panels) * (tile_w + gap) + bar_w
    H = top + tile_h + 2 * (TEXT_PX + 6) + 12
    canvas = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(canvas)
    d.text((10, 8), _safe(title, f_title), fill="black", font=f_title)
    d.text((10, 40), f"shared colour scale: {unit}", fill=(85, 85, 85), font=f_text)
    x = left
    for label, arr in panels:
        rgb = viridis(arr / vmax)
        tile = Image.fromarray(rgb.astype(np.uint8)).resize((tile_w, tile_h), Image.NEAREST)
        canvas.paste(tile, (x, top))
        for li, line in enumerate(_wrap(label, d, f_text, tile_w)):
            d.text((x, top + tile_h + 6 + (TEXT_PX + 4) * li), line, fill="black", font=f_text)
        x += tile_w + gap
    bar = viridis(np.linspace(0, 1, 256))[::-1][:, None, :]
    bar_img = Image.fromarray(bar.astype(np.uint8)).resize((18, tile_h), Image.BILINEAR)
    canvas.paste(bar_img, (x, top))
    for frac in (0.0, 0.5, 1.0):
        y = top + int((1 - frac) * (tile_h - 1))
        d.line([x + 18, y, x + 24, y], fill="black")
        d.text((x + 28, y - TEXT_PX // 2), f"{frac * vmax:.3g}", fill="black", font=f_text)
    return canvas


def _wrap(text: str, draw, font, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        trial = (cur + " " + word).strip()
        if draw.textlength(trial, font=font) <= width or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = word
    return lines + ([cur] if cur else [])


def filter_grid(mask: np.ndarray, values: np.ndarray, title: str, max_filters: int = 16, max_channels: int = 16,
                cell: int = 10) -> Image.Image:
    """Conv weights (F, C, kh, kw) as a grid of blocks: one block per filter (its C input channels side
    by side, one kh x kw tile each), blocks laid out row by row; grey where pruned."""
    F, C, kh, kw = mask.shape
    nf, nc = min(F, max_filters), min(C, max_channels)
    lim = float(np.abs(values[mask]).max()) if mask.any() else 1.0
    gap, bgap = 2, 10
    th, tw = kh * cell, kw * cell
    block_w = nc * (tw + gap) - gap
    per_row = max(1, min(nf, 900 // (block_w + bgap)))
    rows = int(np.ceil(nf / per_row))
    H = rows * (th + bgap + 16) + bgap
    W = per_row * (block_w + bgap) + bgap
    canvas = np.full((H, W, 3), 255.0)
    spots = []
    for f in range(nf):
        r, c0 = divmod(f, per_row)
        y0, x0 = bgap + r * (th + bgap + 16) + 16, bgap + c0 * (block_w + bgap)
        spots.append((f, x0, y0 - 15))
        for c in range(nc):
            tile = np.where(mask[f, c][..., None], diverging(values[f, c], lim), PRUNED)
            tile = np.repeat(np.repeat(tile, cell, axis=0), cell, axis=1)
            xs = x0 + c * (tw + gap)
            canvas[y0:y0 + th, xs:xs + tw] = tile
    img = Image.fromarray(canvas.astype(np.uint8))
    d = ImageDraw.Draw(img)
    f_small = _font(14)
    for f, x, y in spots:
        d.text((x, y), f"filter {f}", fill=(60, 60, 60), font=f_small)
    bar = diverging(np.linspace(-lim, lim, 256), lim)
    chans = "its input channel" if C == 1 else f"input channels 0-{nc - 1} of {C}"
    shown = f"filters 0-{nf - 1} of {F}; each block: {chans}, {kh}x{kw} kernels"
    sub = f"{int(mask.sum()):,} of {mask.size:,} weights kept; {shown}"
    return _compose(np.asarray(img, dtype=float), title, sub, "", "", bar,
                    [(0.0, f"{-lim:.3g}"), (0.5, "0"), (1.0, f"{lim:.3g}")], max_w=900, max_h=900,
                    legend=[(PRUNED, "pruned")], index_ticks=False)

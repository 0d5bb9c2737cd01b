"""The shapes of one Conv2d on one input (docs/sipp.md §1), and its input points as the engines see
them: padded, split into pseudo-points (§2.1), unfolded into (J, P) columns."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as Fnn
from torch import nn


@dataclass(frozen=True)
class _Geometry:
    """Shapes of one Conv2d on one input, with the input padded explicitly."""

    pads: tuple[int, int, int, int]  # F.pad order: left, right, top, bottom
    pad_mode: str
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    channels: int
    hp: int  # padded height / width
    wp: int
    ho: int
    wo: int

    @property
    def patches(self) -> int:
        return self.ho * self.wo

    @property
    def fan_in(self) -> int:
        return self.channels * self.kh * self.kw

    @staticmethod
    def of(module: nn.Conv2d, a: torch.Tensor) -> "_Geometry":
        if a.ndim != 4 or a.shape[1] != module.in_channels:
            raise ValueError(
                f"Conv2d expects inputs shaped (N, {module.in_channels}, H, W); got {tuple(a.shape)}"
            )
        kh, kw = module.kernel_size
        sh, sw = module.stride
        dh, dw = module.dilation
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            left, right, top, bottom = (int(p) for p in module._reversed_padding_repeated_twice)
        else:
            ph, pw = module.padding
            left = right = int(pw)
            top = bottom = int(ph)
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        hp, wp = a.shape[2] + top + bottom, a.shape[3] + left + right
        ho = (hp - dh * (kh - 1) - 1) // sh + 1
        wo = (wp - dw * (kw - 1) - 1) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"input {tuple(a.shape)} is smaller than the kernel of this Conv2d")
        return _Geometry((left, right, top, bottom), mode, kh, kw, sh, sw, dh, dw, a.shape[1], hp, wp, ho, wo)

    def pad(self, a: torch.Tensor) -> torch.Tensor:
        if not any(self.pads):
            return a.contiguous()
        return Fnn.pad(a, self.pads, mode=self.pad_mode).contiguous()

    def z(self, xp: torch.Tensor, ws4: torch.Tensor) -> torch.Tensor:
        """(n, G, P) partial pre-activations of padded inputs xp with the signed weight ws4."""
        z = Fnn.conv2d(xp, ws4, stride=(self.sh, self.sw), dilation=(self.dh, self.dw))  # (n, G, Ho, Wo)
        return z.reshape(z.shape[0], z.shape[1], -1)

    def unfold(self, xp: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(n, J, P): the unfolded input (F.unfold's layout, J in weight.view(F, -1) order).

        A strided view of the padded input copied once: several times faster than
        F.unfold, and it can fill a preallocated buffer.
        """
        n, c = xp.shape[0], self.channels
        xp = xp.contiguous()
        hw = self.hp * self.wp
        view = xp.as_strided(
            (n, c, self.kh, self.kw, self.ho, self.wo),
            (c * hw, hw, self.dh * self.wp, self.dw, self.sh * self.wp, self.sw),
        )
        if out is None:
            out = torch.empty(n, self.fan_in, self.patches, dtype=xp.dtype, device=xp.device)
        out.view(n, c, self.kh, self.kw, self.ho, self.wo).copy_(view)
        return out

    def column_offsets(self, device) -> torch.Tensor:
        """(J,) flat offset of column j = (c, u, v) inside one padded point."""
        c = torch.arange(self.channels, device=device)[:, None, None] * (self.hp * self.wp)  # (C, 1, 1)
        u = torch.arange(self.kh, device=device)[None, :, None] * (self.dh * self.wp)  # (1, kh, 1)
        v = torch.arange(self.kw, device=device)[None, None, :] * self.dw  # (1, 1, kw)
        return (c + u + v).reshape(-1)

    def patch_offsets(self, device) -> torch.Tensor:
        """(P,) flat offset of patch p = (h, w) inside one padded point."""
        h = torch.arange(self.ho, device=device)[:, None] * (self.sh * self.wp)  # (Ho, 1)
        w = torch.arange(self.wo, device=device)[None, :] * self.sw  # (1, Wo)
        return (h + w).reshape(-1)


class _Points:
    """The points of a conv layer's input a (N, C, H, W) as the engines see them: padded,
    and split into pseudo-points [max(a, 0); max(-a, 0)] when ``negative``; produced
    chunk by chunk into a reused buffer (the same values as ``_split(geo.pad(a))``)."""

    def __init__(self, a: torch.Tensor, geo: _Geometry, negative: bool):
        self.a, self.geo, self.negative = a, geo, negative
        self.count = a.shape[0] * (2 if negative else 1)
        self.device = a.device
        self.shape = (a.shape[1], geo.hp, geo.wp)

    def chunk(self, i: int, n: int, buf: torch.Tensor) -> torch.Tensor:
        """Points i .. i + n - 1, (n, C, Hp, Wp), in buf."""
        a, geo, out = self.a, self.geo, buf[:n]
        if geo.pad_mode != "constant":  # padding copies values: it commutes with the split
            return out.copy_(geo.pad(self._fill(i, n, a.new_empty(n, *a.shape[1:]))))
        left, right, top, bottom = geo.pads
        h, w = a.shape[2], a.shape[3]
        out[:, :, :top].zero_()
        out[:, :, top + h :].zero_()
        out[:, :, top : top + h, :left].zero_()
        out[:, :, top : top + h, left + w :].zero_()
        self._fill(i, n, out[:, :, top : top + h, left : left + w])
        return out

    def _fill(self, i: int, n: int, dst: torch.Tensor) -> torch.Tensor:
        """Unpadded points i .. i + n - 1 into dst (n, C, H, W)."""
        a, big = self.a, self.a.shape[0]
        if not self.negative:
            return dst.copy_(a[i : i + n])
        pos = max(0, min(n, big - i))  # the first pos points are a+, the rest a-
        if pos:
            torch.clamp(a[i : i + pos], min=0, out=dst[:pos])
        if pos < n:
            torch.neg(a[i + pos - big : i + n - big], out=dst[pos:]).clamp_(min=0)
        return dst

"""An 8x8-digits MLP (64-32) trained on the raw stored values (0..16), with its data and weights as files."""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from sipp_core.zoo.models import build_model

WIDTHS = (64, 32)


def raw_digits_files() -> tuple[bytes, bytes, float]:
    """(npz bytes, state_dict bytes, plain PyTorch test accuracy)."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    tr, te = order[:1400], order[1400:]
    torch.manual_seed(0)
    net = build_model("mlp", (64,), 10, seed=0, widths=WIDTHS)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    for _ in range(30):
        for i in range(0, len(xt), 64):
            loss = F.cross_entropy(net(xt[i:i + 64]), yt[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        plain = float((net(torch.from_numpy(x[te])).argmax(1) == torch.from_numpy(y[te])).float().mean())
    data, weights = io.BytesIO(), io.BytesIO()
    np.savez(data, x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te])
    torch.save(net.state_dict(), weights)
    return data.getvalue(), weights.getvalue(), plain

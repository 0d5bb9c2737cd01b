"""Regenerate the shipped checkpoints in assets/checkpoints/ and print their test accuracy.

    .venv/bin/python assets/make_checkpoints.py

Deterministic on the CPU for a given torch build (seeded init and shuffling).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipp_core.checkpoints import ASSETS_DIR, checkpoint_name, save_checkpoint  # noqa: E402
from sipp_core.data import load_dataset  # noqa: E402
from sipp_core.models import build_model  # noqa: E402
from sipp_core.train import DEFAULT_EPOCHS, train_model  # noqa: E402

SHIPPED = [("lenet300", "mnist5k"), ("lenet5", "mnist5k")]


def main() -> None:
    for name, dataset in SHIPPED:
        record = load_dataset(dataset)
        epochs, seed = DEFAULT_EPOCHS[name], 0
        model = build_model(name, record.input_shape, record.num_classes, seed=seed)
        start = time.perf_counter()
        model, acc = train_model(model, record, epochs=epochs, seed=seed, device="cpu")
        took = time.perf_counter() - start
        path = ASSETS_DIR / checkpoint_name(name, dataset, epochs, seed)
        save_checkpoint(path, model, name=name, dataset=dataset, epochs=epochs, seed=seed,
                        input_shape=record.input_shape, num_classes=record.num_classes, test_accuracy=acc)
        print(f"{name} on {dataset}: test accuracy {acc:.4f}, {epochs} epochs in {took:.1f} s, "
              f"{path.stat().st_size / 1024:.0f} KiB -> {path.relative_to(ASSETS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()

"""Regenerate the shipped checkpoints in assets/checkpoints/ and print their test accuracy.

    .venv/bin/python assets/make_checkpoints.py               # retrain, then rewrite SHA256SUMS
    .venv/bin/python assets/make_checkpoints.py --manifest    # only rewrite SHA256SUMS for the files there

Deterministic on the CPU for a given torch build (seeded init and shuffling). SHA256SUMS
(``sha256sum`` format; check with ``cd assets/checkpoints && sha256sum -c SHA256SUMS``) is what
``load_trained`` verifies a shipped file against before loading it: a file that differs is refused.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipp_core.io.checkpoints import ASSETS_DIR, checkpoint_name, save_checkpoint, write_manifest  # noqa: E402
from sipp_core.io.data import load_dataset  # noqa: E402
from sipp_core.zoo.models import build_model  # noqa: E402
from sipp_core.zoo.train import DEFAULT_EPOCHS, train_model  # noqa: E402

SHIPPED = [("lenet300", "mnist5k"), ("lenet5", "mnist5k")]


def train_all() -> None:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", action="store_true",
                        help="do not retrain: only rewrite SHA256SUMS for the checkpoints already there")
    args = parser.parse_args(argv)
    if not args.manifest:
        train_all()
    # Always last, so the manifest describes exactly the files now shipped.
    manifest = write_manifest(ASSETS_DIR)
    print(f"wrote {manifest.relative_to(ASSETS_DIR.parent.parent)} "
          f"({len(manifest.read_text().splitlines())} checkpoints)")


if __name__ == "__main__":
    main()
